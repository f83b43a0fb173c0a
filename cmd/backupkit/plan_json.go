package main

import (
	"bufio"
	"encoding/json"
	"io"
	"time"

	"github.com/backupkit/backupkit/reconcile"
)

// The plan as JSON (plan -o json, and the plan in apply's report): the
// document, and a writer that streams it one action per line.

type actionJSON struct {
	Type        reconcile.ActionType `json:"type"`
	Database    string               `json:"database"`
	Shown       string               `json:"database_shown,omitempty"` // a discovered database's name decoded, when it differs`
	Storage     string               `json:"storage"`
	Key         string               `json:"key,omitempty"`
	Reason      string               `json:"reason"`
	Code        string               `json:"reason_code"`
	Forced      bool                 `json:"forced,omitempty"`
	Conditional bool                 `json:"conditional,omitempty"`
}

type planDoc struct {
	envelope
	Now        time.Time    `json:"now"`
	Actions    []actionJSON `json:"actions"`
	Warnings   []string     `json:"warnings,omitempty"`
	Unobserved []string     `json:"unobserved,omitempty"`
}

func actionOf(a reconcile.Action) actionJSON {
	return actionJSON{Type: a.Type, Database: a.Database, Storage: a.Storage, Key: a.Key, Reason: a.Reason, Code: a.Code, Forced: a.Forced, Conditional: a.Conditional}
}

func planJSON(p reconcile.Plan) planDoc {
	d := planDoc{envelope: v1, Now: p.Now, Actions: make([]actionJSON, len(p.Actions)), Warnings: p.Warnings, Unobserved: p.Unobserved}
	for i, a := range p.Actions {
		d.Actions[i] = actionShown(p, a)
	}
	return d
}

// writePlanJSON streams a plan document: its fields, then one action per
// line, so a plan of 100,000 prunes is not built twice in memory.
func writePlanJSON(w io.Writer, p reconcile.Plan) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	d := planJSON(reconcile.Plan{Now: p.Now, Warnings: p.Warnings, Unobserved: p.Unobserved})
	head, err := json.Marshal(struct {
		envelope
		Now        time.Time `json:"now"`
		Warnings   []string  `json:"warnings,omitempty"`
		Unobserved []string  `json:"unobserved,omitempty"`
	}{d.envelope, d.Now, d.Warnings, d.Unobserved})
	if err != nil {
		return err
	}
	bw.Write(head[:len(head)-1]) // without its closing brace
	bw.WriteString(`,"actions":[`)
	var b []byte
	for i, a := range p.Actions {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n  ")
		b = appendAction(b[:0], actionShown(p, a))
		bw.Write(b)
	}
	bw.WriteString("\n]}\n")
	return bw.Flush()
}

// appendAction is json.Marshal of an action (the same bytes), without
// reflection: a plan can hold 100,000 of them.
func appendAction(b []byte, a actionJSON) []byte {
	field := func(name, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = appendJSONString(b, v)
	}
	b = append(b, '{')
	field("type", string(a.Type), false)
	field("database", a.Database, false)
	field("database_shown", a.Shown, true)
	field("storage", a.Storage, false)
	field("key", a.Key, true)
	field("reason", a.Reason, false)
	field("reason_code", a.Code, false)
	if a.Forced {
		b = append(b, `,"forced":true`...)
	}
	if a.Conditional {
		b = append(b, `,"conditional":true`...)
	}
	return append(b, '}')
}

// jsonPlain marks the bytes encoding/json writes as they are.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString quotes s as encoding/json does; strings with anything
// to escape go through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !jsonPlain[s[i]] {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// actionShown is an action for -o json, with its database's name as
// shown when that differs.
func actionShown(p reconcile.Plan, a reconcile.Action) actionJSON {
	j := actionOf(a)
	if s := p.Show(a.Database); s != a.Database {
		j.Shown = s
	}
	return j
}
