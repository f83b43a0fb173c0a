// Command testsummary reads `go test -json` on stdin and prints what a
// person needs: each package's result, the whole output of every failed
// test, and at the end, loudly, every test that was skipped because a
// service, root or test data was missing (so a green local run that
// tested less than CI does says so). It exits 1 when anything failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	out := map[string][]string{} // package/test → output lines
	var skipped []string
	failed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // not JSON: a build error, say
			continue
		}
		id := e.Package + " " + e.Test
		switch e.Action {
		case "build-output":
			fmt.Print(e.Output)
		case "build-fail":
			failed = true
		case "output":
			if e.Test == "" {
				if !strings.HasPrefix(e.Output, "PASS") && !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "FAIL\n") {
					fmt.Print(e.Output)
				}
				continue
			}
			out[id] = append(out[id], e.Output)
		case "fail":
			failed = true
			if e.Test != "" {
				fmt.Printf("--- FAIL: %s (%s)\n%s", e.Test, e.Package, strings.Join(out[id], ""))
			}
			delete(out, id)
		case "skip":
			for _, l := range out[id] {
				if i := strings.Index(l, "MISSING "); i >= 0 {
					skipped = append(skipped, fmt.Sprintf("%s %s: %s", e.Package, e.Test, strings.TrimSpace(l[i:])))
					break
				}
			}
			delete(out, id)
		case "pass":
			delete(out, id)
		}
	}
	if len(skipped) > 0 {
		sort.Strings(skipped)
		fmt.Printf("\n!!! %d test(s) were SKIPPED because something they need is missing; this run tested less than CI does:\n", len(skipped))
		for _, s := range skipped {
			fmt.Println("!!!   " + s)
		}
	}
	if failed {
		os.Exit(1)
	}
}
