#!/bin/sh
# Runs a command with the files a container of a pod sees: the machine's own directories, plus volumes at the
# paths the pod spec mounts them (/certs, /sds, /etc/hosts...). What the kubelet does with volume mounts, done
# without creating anything on the machine: run it in a mount namespace of its own
# (`unshare -m --propagation private`), where ROOT gets a tmpfs holding binds of the machine's top-level
# directories, and a mount point missing under an existing directory is made in a tmpfs laid over that
# directory (in this view only) holding binds of its entries.
# Usage: pod-root.sh ROOT SOURCE:MOUNT_PATH... -- COMMAND ARGS...
set -eu
root="$1"
shift
mount -t tmpfs pod-root "$root"

# One entry of the machine (a directory, a file or a symbolic link) at its place in the root.
bind_entry() {
  if [ -L "$1" ]; then
    cp -P "$1" "$2"
  elif [ -d "$1" ]; then
    mkdir -p "$2"
    # /tmp holds ROOT itself: a recursive bind would hold the root inside itself.
    if [ "$1" = /tmp ]; then mount --bind "$1" "$2"; else mount --rbind "$1" "$2"; fi
  elif [ -e "$1" ]; then
    : > "$2"
    mount --bind "$1" "$2"
  fi
}

for entry in /* /.[!.]*; do
  if [ -e "$entry" ] || [ -L "$entry" ]; then bind_entry "$entry" "$root$entry"; fi
done

shadowed=" / "
# Directory $1 (absolute) in the root, made in a tmpfs: the deepest directory above it that the machine has
# is shadowed by one (once), holding binds of that directory's entries.
make_dir() {
  existing="$1"
  while [ ! -d "$root$existing" ]; do existing=$(dirname "$existing"); done
  [ "$existing" = "$1" ] && return 0
  case "$shadowed" in
    *" $existing "*) ;;
    *)
      if [ -d "$existing" ]; then
        mount -t tmpfs pod-root "$root$existing"
        for entry in "$existing"/* "$existing"/.[!.]*; do
          if [ -e "$entry" ] || [ -L "$entry" ]; then bind_entry "$entry" "$root$existing/${entry##*/}"; fi
        done
      fi
      shadowed="$shadowed$existing "
      ;;
  esac
  mkdir -p "$root$1"
}

while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
  source="${1%%:*}" target="${1#*:}"
  shift
  if [ -d "$source" ]; then
    make_dir "$target"
  else
    make_dir "$(dirname "$target")"
    [ -e "$root$target" ] || : > "$root$target"
  fi
  mount --bind "$source" "$root$target"
done
shift
exec chroot "$root" "$@"
