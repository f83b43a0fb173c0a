// Package pg owns talking SQL to PostgreSQL: the connection settings
// (Conn) shared with the client tools, the server's version, inspecting a
// restore target, creating and dropping databases, and the advisory lock
// that serialises BackupKit writers of one database.
//
// It must not import any other BackupKit package.
package pg
