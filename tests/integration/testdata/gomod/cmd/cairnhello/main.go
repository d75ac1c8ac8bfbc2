// Command cairnhello prints a greeting; it exists to be built through the
// cairn-gocacheprog integration test.
package main

import (
	"fmt"
	"net/http"
	"os"

	"example.com/cairngo/internal/greet"
)

func main() {
	name := "world"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	fmt.Println(greet.Make(name).JSON())
	_ = http.StatusOK // pulls in a large part of the standard library
}
