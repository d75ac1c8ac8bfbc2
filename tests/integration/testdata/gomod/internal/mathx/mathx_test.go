package mathx

import "testing"

func TestFib(t *testing.T) {
	if got := Fib(10); got != 55 {
		t.Fatalf("Fib(10) = %d, want 55", got)
	}
}

func TestSum(t *testing.T) {
	if got := Sum(1, 2, 3); got != 6 {
		t.Fatalf("Sum = %d, want 6", got)
	}
}
