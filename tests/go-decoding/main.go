// A differential corpus for hookgate's Go-compatible decoding (filter/src/providers/go_json.rs and gcr.rs):
// payloads of the dockerhub, quay, acr and gcr types and ~80,000 cuts and mutations of them, decoded as
// Flux v1.9.3's receiver decodes them (its structs restated from what its source declares), by Go's own
// encoding/json and encoding/base64. Each line: type, base64 of the body, ok or err, the decoded struct
// (for gcr, the event filters see) as JSON. Checked by the ignored test decoding_matches_go_on_a_corpus:
//
//	(cd tests/go-decoding && go run . > /tmp/corpus.tsv)
//	HOOKGATE_GO_CORPUS=/tmp/corpus.tsv cargo test -p hookgate-filter --lib decoding_matches_go -- --ignored
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"time"
)

type dockerhub struct {
	PushData struct {
		Tag string `json:"tag"`
	} `json:"push_data"`
	Repository struct {
		URL string `json:"repo_url"`
	} `json:"repository"`
}
type quay struct {
	DockerUrl   string   `json:"docker_url"`
	UpdatedTags []string `json:"updated_tags"`
}
type target struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
}
type acr struct {
	Action string `json:"action"`
	Target target `json:"target"`
}
type gcrData struct {
	Action string `json:"action"`
	Digest string `json:"digest"`
	Tag    string `json:"tag"`
}
type gcrPayload struct {
	Message struct {
		Data         string    `json:"data"`
		MessageID    string    `json:"messageId"`
		PublishTime  time.Time `json:"publishTime"`
		Subscription string    `json:"subscription"`
	} `json:"message"`
}

func decode(kind string, b []byte) (any, error) {
	switch kind {
	case "dockerhub":
		var p dockerhub
		err := json.NewDecoder(bytes.NewReader(b)).Decode(&p)
		return p, err
	case "quay":
		var p quay
		err := json.NewDecoder(bytes.NewReader(b)).Decode(&p)
		return p, err
	case "acr":
		var p acr
		err := json.NewDecoder(bytes.NewReader(b)).Decode(&p)
		return p, err
	case "gcr":
		var p gcrPayload
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(&p); err != nil {
			return nil, err
		}
		raw, _ := base64.StdEncoding.DecodeString(p.Message.Data)
		var d gcrData
		err := json.Unmarshal(raw, &d)
		return d, err
	}
	panic(kind)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func main() {
	seeds := map[string][]string{
		"dockerhub": {
			`{"push_data":{"tag":"latest","pusher":"o"},"repository":{"repo_url":"https://hub.docker.com/r/o/a"}}`,
			`{"Push_Data":{"TAG":"v1"},"x":[1,{"y":null}]} tail`, `null`, `{"push_data":{"tag":null},"push_data":{"tag":"a"}}`,
			"{\"push_data\":{\"ta\u017f\":\"x\",\"tag\":\"\\ud800\\u00e9\"}}",
		},
		"quay": {
			`{"docker_url":"quay.io/o/a","updated_tags":["v1","latest"]}`, `{"updated_tags":[null,"b"],"updated_tags":null}`,
			`{"updated_tags":["a","b","c"],"updated_tags":["x"]}`, `{"Docker_URL":"u"}`,
		},
		"acr": {
			`{"id":"1","action":"push","target":{"repository":"r","tag":"v","digest":"sha256:00"}}`, `{"target":{},"TARGET":{"Tag":"t"}}`,
			`{"action":null,"target":null}`,
		},
		"gcr": {
			`{"message":{"data":"` + b64(`{"action":"INSERT","digest":"d@sha256:00","tag":"r/a:1.1"}`) + `","messageId":"1","publishTime":"2021-02-26T19:13:55.749Z"},"subscription":"s"}`,
			`{"message":{"data":"` + b64(`{"TAG":"t","x":[]}`) + `!!","publishTime":"2021-02-26T9:13:55,5+24:60"}}`,
			`{"message":{"data":"` + strings.TrimRight(b64(`{"tag":"t"}`), "=") + `"}}`,
			`{"message":{"data":"` + b64(`null`) + "\\n\"}}",
			`{"message":{"data":"` + b64("{\"tag\":\"\xff\xed\xa0\x80\"}") + `"}}`,
			`{"message":{"data":"` + b64(`{"tag":"a"} x`) + `","publishTime":null}}`,
		},
	}
	interesting := []byte{0, ' ', '"', '\\', '{', '}', '[', ']', ':', ',', 'n', 'u', '1', '=', 'A', '/', '\n', 0x80, 0xed, 0xff, 'T', 'Z', '+', '.'}
	rng := rand.New(rand.NewSource(22))
	for _, kind := range []string{"dockerhub", "quay", "acr", "gcr"} {
		var bodies [][]byte
		for _, seed := range seeds[kind] {
			s := []byte(seed)
			bodies = append(bodies, s)
			for end := 0; end < len(s); end++ {
				bodies = append(bodies, s[:end])
			}
			for at := 0; at < len(s); at++ {
				for _, c := range interesting {
					m := append([]byte(nil), s...)
					m[at] = c
					bodies = append(bodies, m)
				}
			}
			for i := 0; i < 3000; i++ {
				m := append([]byte(nil), s...)
				for j := 0; j < 1+rng.Intn(4); j++ {
					at := rng.Intn(len(m))
					switch rng.Intn(3) {
					case 0:
						m[at] = interesting[rng.Intn(len(interesting))]
					case 1:
						m = append(m[:at], m[at+1:]...)
					default:
						m = append(m[:at], append([]byte{interesting[rng.Intn(len(interesting))]}, m[at:]...)...)
					}
					if len(m) == 0 {
						break
					}
				}
				bodies = append(bodies, m)
			}
		}
		for _, b := range bodies {
			v, err := decode(kind, b)
			verdict, out := "ok", []byte("null")
			if err != nil {
				verdict = "err"
			} else {
				out, _ = json.Marshal(v)
			}
			fmt.Printf("%s\t%s\t%s\t%s\n", kind, base64.StdEncoding.EncodeToString(b), verdict, out)
		}
	}
}
