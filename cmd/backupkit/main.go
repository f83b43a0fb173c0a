// Command backupkit keeps PostgreSQL backups declared in one config file:
// it observes storage, plans the backups that are due and the prunes that
// retention wants, and applies that plan.
package main

import (
	"os"
	_ "time/tzdata" // time zones work in minimal images too
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
