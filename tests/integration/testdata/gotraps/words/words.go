// Package words counts words.
package words

import "strings"

// Count returns the number of space-separated words in s.
func Count(s string) int { return len(strings.Fields(s)) }
