package words

import (
	"os"
	"testing"
)

// Reads testdata/: the go command keys this result on the file's mtime.
func TestCountFile(t *testing.T) {
	data, err := os.ReadFile("testdata/input.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := Count(string(data)); got != 5 {
		t.Fatalf("Count = %d, want 5", got)
	}
}
