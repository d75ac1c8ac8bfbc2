package textx

import "testing"

func TestTitle(t *testing.T) {
	if got := Title("hello cairn world"); got != "Hello Cairn World" {
		t.Fatalf("Title = %q", got)
	}
}

func TestReverse(t *testing.T) {
	if got := Reverse("abc"); got != "cba" {
		t.Fatalf("Reverse = %q", got)
	}
}
