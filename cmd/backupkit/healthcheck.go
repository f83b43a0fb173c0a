package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The daemon writes the address it serves /healthz on to addrFile, so the
// container's HEALTHCHECK (`backupkit healthcheck`) follows --listen
// without a shell, wget or curl in the image.
func addrFile() string {
	if f := os.Getenv("BACKUPKIT_ADDR_FILE"); f != "" {
		return f
	}
	return os.TempDir() + "/backupkit.addr"
}

func newHealthcheckCmd(g *globals) *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Ask a running daemon's /healthz (for a container HEALTHCHECK); exit 0 when healthy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if addr == "" {
				b, err := os.ReadFile(addrFile())
				if err != nil {
					return fmt.Errorf("no daemon address: %v (start the daemon with --listen, or pass --addr)", err)
				}
				addr = strings.TrimSpace(string(b))
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return usagef("--addr %s: %v", addr, err)
			}
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("healthz: %w", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			fmt.Fprint(g.stdout, string(body))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("unhealthy (HTTP %d)", resp.StatusCode)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "the daemon's --listen address (default: the one the running daemon recorded)")
	return cmd
}
