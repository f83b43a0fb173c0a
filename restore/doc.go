// Package restore owns restoring and verifying a backup: resolving what
// to restore (a file, STORAGE:KEY or latest), the check pass that reads,
// authenticates and decodes every byte before anything touches a
// database, inspecting the target, and the rules around it: refuse a
// target that holds objects unless asked to clean it, create a missing
// target and drop it again if the restore fails, restore the very bytes
// that were checked.
//
// It must not import the config (schema) or the packages that use it
// (reconcile, cmd): the caller hands it a typed Options.
package restore
