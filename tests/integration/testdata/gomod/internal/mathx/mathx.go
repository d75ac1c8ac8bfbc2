// Package mathx holds small numeric helpers for the cache test module.
package mathx

// Fib returns the n-th Fibonacci number.
func Fib(n int) int {
	a, b := 0, 1
	for i := 0; i < n; i++ {
		a, b = b, a+b
	}
	return a
}

// Sum returns the sum of xs.
func Sum(xs ...int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}
