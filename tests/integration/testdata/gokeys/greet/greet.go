// Package greet is the library of the go-keys forensics test module.
package greet

// Hello returns a greeting for name.
func Hello(name string) string { return "hello, " + name }
