package cli

import (
	"fmt"
	"io"
	"os"
)

// openInput opens what a flag names: a file, or "-" for stdin. Errors are
// usage errors naming the flag (never the file's content).
func openInput(flag, path string, stdin io.Reader) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(stdin), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, usageErr(fmt.Errorf("%s: %w", flag, err))
	}
	return f, nil
}

// readInput reads what a flag names (openInput), at most 1 MiB.
func readInput(flag, path string, stdin io.Reader) ([]byte, error) {
	r, err := openInput(flag, path, stdin)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, usageErr(fmt.Errorf("%s: %w", flag, err))
	}
	return b, nil
}
