package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/schema"
)

// Exit codes, the one table (see README).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// usageError marks errors that are the caller's: bad flags or arguments.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitCodeError carries an explicit exit code (plan --detailed-exitcode).
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// failure forces exit code 1 for any error, usage and config errors
// included (plan --detailed-exitcode: 2 must mean "changes pending").
type failure struct{ err error }

func (e failure) Error() string { return e.err.Error() }
func (e failure) Unwrap() error { return e.err }

// globals are the flags every command shares.
type globals struct {
	configPath string
	verbose    bool
	quiet      bool
	noColor    bool
	logFormat  string
	// progressEvery is how often progress is logged off a terminal.
	progressEvery time.Duration
	cfg           *schema.Config // once loaded
	stdin         io.Reader
	stdout        io.Writer
	stderr        io.Writer
	log           *slog.Logger
}

// isTerminal reports whether a stream is a terminal.
func isTerminal(s any) bool {
	f, ok := s.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// color reports whether stderr gets colours: a terminal, and neither
// --no-color nor NO_COLOR (https://no-color.org) says otherwise.
func (g *globals) color() bool {
	return isTerminal(g.stderr) && !g.noColor && os.Getenv("NO_COLOR") == ""
}

func (g *globals) setupLogging() error {
	level := slog.LevelInfo
	switch {
	case g.quiet:
		level = slog.LevelError
	case g.verbose:
		level = slog.LevelDebug
	}
	switch g.logFormat {
	case "", "auto":
		if isTerminal(g.stderr) {
			g.log = slog.New(tint.NewHandler(g.stderr, &tint.Options{Level: level, TimeFormat: time.TimeOnly, NoColor: !g.color()}))
		} else {
			g.log = slog.New(slog.NewJSONHandler(g.stderr, &slog.HandlerOptions{Level: level}))
		}
	case "text":
		g.log = slog.New(tint.NewHandler(g.stderr, &tint.Options{Level: level, TimeFormat: time.TimeOnly, NoColor: !g.color()}))
	case "json":
		g.log = slog.New(slog.NewJSONHandler(g.stderr, &slog.HandlerOptions{Level: level}))
	default:
		return usagef("--log-format must be text or json, got %q", g.logFormat)
	}
	return nil
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "backupkit",
		Short: "Declarative PostgreSQL backups: observe, plan, apply",
		Long: `BackupKit keeps PostgreSQL backups the way a GitOps controller keeps a
cluster: one config file declares databases, schedules, retention, storage
and notifications; each run observes storage, plans what is due and applies it.

Exit codes: 0 success, 1 failure, 2 usage or config error
(plan --detailed-exitcode: 0 no changes, 2 changes pending, 1 error).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.setupLogging()
		},
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetVersionTemplate("backupkit {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configPath, "config", "c", "", "config file (.yaml, .yml, .json or .cue); default $BACKUPKIT_CONFIG, then ./backupkit.yaml")
	pf.BoolVar(&g.verbose, "verbose", false, "debug logging")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "log only errors; no progress display")
	pf.BoolVar(&g.noColor, "no-color", false, "no colours in logs (also: NO_COLOR set)")
	pf.DurationVar(&g.progressEvery, "progress-interval", 30*time.Second, "how often long work logs its progress when stderr is not a terminal")
	pf.StringVar(&g.logFormat, "log-format", "", "log format: text or json (default: text on a terminal, json otherwise)")

	root.AddCommand(
		newValidateCmd(g),
		newSchemaCmd(g),
		newVersionCmd(g),
		newPlanCmd(g),
		newApplyCmd(g),
		newBackupCmd(g),
		newRestoreCmd(g),
		newVerifyCmd(g),
		newListCmd(g),
		newDaemonCmd(g),
		newDrillCmd(g),
		newHealthcheckCmd(g),
		newDecryptCmd(g),
		newInitCmd(g),
		newTestCmd(g),
	)
	g.completions(root)
	return root
}

// run executes the CLI and maps the outcome to an exit code.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{stdin: os.Stdin, stdout: stdout, stderr: stderr}
	g.log = slog.New(slog.NewTextHandler(stderr, nil))
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := exitCode(err, stderr)
	var ec exitCodeError
	if code != exitOK && !errors.As(err, &ec) && slices.Contains(args, "--detailed-exitcode") {
		// A CI gate accepts 0 (no changes) and 2 (changes pending): every
		// error, a usage or config one included, must be 1.
		return exitFailure
	}
	return code
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ec exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	fmt.Fprintln(stderr, "error:", err)
	var f failure
	if errors.As(err, &f) {
		return exitFailure
	}
	var cfgErr *schema.Error
	var ue usageError
	if errors.As(err, &cfgErr) || errors.As(err, &ue) {
		return exitUsage
	}
	if isUnknownCommand(err) {
		return exitUsage
	}
	return exitFailure
}

func isUnknownCommand(err error) bool {
	s := err.Error()
	return len(s) > 16 && (s[:16] == "unknown command " || s[:15] == "unknown flag: -" || s[:14] == "unknown flag: ")
}
