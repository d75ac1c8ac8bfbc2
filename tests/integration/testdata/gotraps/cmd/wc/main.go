// Command wc prints the number of words in its arguments.
package main

import (
	"fmt"
	"os"
	"strings"

	"example.com/gotraps/words"
)

func main() { fmt.Println("words:", words.Count(strings.Join(os.Args[1:], " "))) }
