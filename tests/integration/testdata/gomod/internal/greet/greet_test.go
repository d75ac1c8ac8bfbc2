package greet

import "testing"

func TestMake(t *testing.T) {
	g := Make("go")
	if g.Text != "Hello Go" || g.Fib != 6765 {
		t.Fatalf("Make = %+v", g)
	}
	if g.JSON() != `{"text":"Hello Go","fib":6765}` {
		t.Fatalf("JSON = %s", g.JSON())
	}
}
