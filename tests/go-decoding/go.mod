module godiff

go 1.26
