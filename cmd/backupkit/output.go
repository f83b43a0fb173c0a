package main

import (
	"encoding/json"
	"fmt"
	"io"
)

// envelope starts every -o json document: {"version":1,…}.
type envelope struct {
	Version int `json:"version"`
}

var v1 = envelope{Version: 1}

// writeJSON encodes one -o json document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// outputFlag checks an -o value.
func outputFlag(o string) error {
	if o != "text" && o != "json" {
		return usagef("-o must be text or json, got %q", o)
	}
	return nil
}

func humanBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
