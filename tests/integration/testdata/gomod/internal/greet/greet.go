// Package greet builds greetings from the other packages of the module.
package greet

import (
	"encoding/json"
	"fmt"

	"example.com/cairngo/internal/mathx"
	"example.com/cairngo/internal/textx"
)

// Greeting is what the command prints.
type Greeting struct {
	Text string `json:"text"`
	Fib  int    `json:"fib"`
}

// Make returns the greeting for name.
func Make(name string) Greeting {
	return Greeting{Text: textx.Title(fmt.Sprintf("hello %s", name)), Fib: mathx.Fib(20)}
}

// JSON returns g encoded as JSON.
func (g Greeting) JSON() string {
	b, _ := json.Marshal(g)
	return string(b)
}
