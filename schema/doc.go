// Package schema owns BackupKit's configuration: the embedded CUE schema,
// loading YAML, JSON or CUE files, ${VAR} expansion, *_file secrets,
// defaults and every validation rule, producing a typed Config. Problems
// come back together as one *Error, each with its field path and
// file:line:column.
//
// Only cmd imports it: the rest of BackupKit gets small typed inputs. It
// may use format (the codec table) and internal/secret, nothing else.
package schema
