// Command example asks a running `mobilesam serve` which model it serves:
//
//	go run ./example 127.0.0.1:50051
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	mobilesamv1 "github.com/mobilesam-serve/mobilesam-serve/clients/go/mobilesam/v1"
	"google.golang.org/grpc"
)

func main() {
	conn, err := grpc.Dial(os.Args[1], grpc.WithInsecure()) // plaintext; grpc.WithTransportCredentials for TLS
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	info, err := mobilesamv1.NewSegmentAnythingClient(conn).GetModelInfo(context.Background(), &mobilesamv1.GetModelInfoRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("family=%s name=%s\n", info.GetFamily(), info.GetName())
}
