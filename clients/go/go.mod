module github.com/mobilesam-serve/mobilesam-serve/clients/go

go 1.19

// The versions tests/contract/run.sh builds the module with (Debian 12's
// golang-google-grpc-dev and golang-google-protobuf-dev, GOPATH mode); a program that
// imports it may use any later ones. No go.sum: see README.md, "In module mode".
require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
