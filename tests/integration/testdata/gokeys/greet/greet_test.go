package greet

import (
	"os"
	"testing"
)

// The test reads an environment variable, so the go command keys its cached
// result on that variable's value.
func TestHello(t *testing.T) {
	name := os.Getenv("GOKEYS_GREETING")
	if name == "" {
		name = "world"
	}
	if got := Hello(name); got != "hello, "+name {
		t.Fatalf("Hello(%q) = %q", name, got)
	}
}
