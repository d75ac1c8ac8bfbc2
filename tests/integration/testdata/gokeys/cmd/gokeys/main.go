// Command gokeys prints a greeting (the main package of the go-keys test).
package main

import (
	"fmt"

	"example.com/gokeys/greet"
)

func main() { fmt.Println(greet.Hello("gokeys")) }
