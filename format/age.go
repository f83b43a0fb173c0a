package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"golang.org/x/crypto/ssh"
)

// Age is the public-key encryption of a backup: an age stream
// (age-encryption.org/v1) to one or more recipients, ".age" in its key.
// Whoever holds any one recipient's identity can read it, with BackupKit
// or with the age CLI.
const Age Encryption = "age"

const ageMagic = "age-encryption.org/v1\n"

// Recipients are the public keys backups are encrypted to.
type Recipients struct {
	keys []age.Recipient
	// Fingerprints name the keys (in the manifest and in list): the first
	// 16 hex digits of the SHA-256 of each recipient's text.
	Fingerprints []string
}

// Len is the number of recipients.
func (r Recipients) Len() int { return len(r.keys) }

// Fingerprint names a public key by the SHA-256 of its text.
func Fingerprint(recipient string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(recipient)))
	return hex.EncodeToString(sum[:8])
}

// ParseRecipients reads age recipients ("age1…") and SSH public keys
// ("ssh-ed25519 …", "ssh-rsa …"), one per entry; blank entries and
// "#" comments are skipped. An entry that does not parse is an error
// naming its position (never its text, in case a secret was pasted).
func ParseRecipients(entries []string) (Recipients, error) {
	var out Recipients
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" || strings.HasPrefix(e, "#") {
			continue
		}
		var r age.Recipient
		var err error
		switch {
		case strings.HasPrefix(e, "age1pq1"):
			r, err = age.ParseHybridRecipient(e)
		case strings.HasPrefix(e, "age1"):
			r, err = age.ParseX25519Recipient(e)
		case strings.HasPrefix(e, "ssh-"):
			r, err = agessh.ParseRecipient(e)
		case strings.HasPrefix(e, "AGE-SECRET-KEY"):
			return out, fmt.Errorf("recipient %d is a private key (AGE-SECRET-KEY…): recipients are public keys (age1…); keep the private key for identity_file", i+1)
		default:
			err = errors.New(`want an age public key (age1…) or an SSH public key ("ssh-ed25519 …")`)
		}
		if err != nil {
			return out, fmt.Errorf("recipient %d does not parse: %v", i+1, err)
		}
		out.keys = append(out.keys, r)
		out.Fingerprints = append(out.Fingerprints, Fingerprint(e))
	}
	if len(out.keys) == 0 {
		return out, errors.New("no recipients")
	}
	return out, nil
}

// Identities are the private keys that decrypt age backups, and the
// fingerprints of the recipients they answer to.
type Identities struct {
	ids          []age.Identity
	Fingerprints []string
}

// ErrPassphraseIdentity means an identity file is protected by a
// passphrase, which a non-interactive run cannot ask for.
var ErrPassphraseIdentity = errors.New("the identity file is protected by a passphrase, which BackupKit cannot ask for in a non-interactive run: give it an unprotected identity file (kept as a secret where restores happen)")

// ParseIdentities reads an identity file: age X25519 identities
// (AGE-SECRET-KEY-1…, one per line) or one SSH private key (PEM).
func ParseIdentities(b []byte) (Identities, error) {
	var out Identities
	s := string(b)
	switch {
	case strings.Contains(s, "-----BEGIN AGE ENCRYPTED FILE-----") || strings.HasPrefix(s, ageMagic):
		return out, ErrPassphraseIdentity
	case strings.Contains(s, "-----BEGIN"):
		id, err := agessh.ParseIdentity(b)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return out, ErrPassphraseIdentity
		}
		if err != nil {
			return out, fmt.Errorf("SSH identity: %v", err)
		}
		out.ids = []age.Identity{id}
		if pk, err := ssh.ParsePrivateKey(b); err == nil {
			out.Fingerprints = []string{Fingerprint(string(ssh.MarshalAuthorizedKey(pk.PublicKey())))}
		}
		return out, nil
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		return out, fmt.Errorf("age identity file: %v", err)
	}
	out.ids = ids
	for _, id := range ids {
		switch x := id.(type) {
		case *age.X25519Identity:
			out.Fingerprints = append(out.Fingerprints, Fingerprint(x.Recipient().String()))
		case *age.HybridIdentity:
			out.Fingerprints = append(out.Fingerprints, Fingerprint(x.Recipient().String()))
		}
	}
	return out, nil
}

// Len is the number of identities.
func (i Identities) Len() int { return len(i.ids) }

// NewAgeEncrypter returns a WriteCloser that encrypts into w to the
// recipients, as a stream (64 KiB chunks, each authenticated). Close
// seals the last chunk; it does not close w.
func NewAgeEncrypter(w io.Writer, r Recipients) (io.WriteCloser, error) {
	if r.Len() == 0 {
		return nil, errors.New("age encryption needs at least one recipient")
	}
	return age.Encrypt(w, r.keys...)
}

// ErrNeedIdentity means an age backup and no identity to open it with.
var ErrNeedIdentity = errors.New("backup is age-encrypted but no identity_file is configured: restoring it needs the private key of one of its recipients")

// ErrWrongIdentity means no configured identity is a recipient.
var ErrWrongIdentity = errors.New("wrong age identity: none of the configured identities is a recipient of this backup")

func newAgeDecrypter(r io.Reader, ids Identities) (io.Reader, error) {
	if ids.Len() == 0 {
		return nil, ErrNeedIdentity
	}
	dr, err := age.Decrypt(r, ids.ids...)
	var nomatch *age.NoIdentityMatchError
	switch {
	case errors.As(err, &nomatch):
		return nil, ErrWrongIdentity
	case err != nil:
		return nil, fmt.Errorf("%w: age header: %v", ErrCorrupted, err)
	}
	return ageErrors{dr}, nil
}

// ageErrors names age's stream failures the way the other layers do: a
// stream cut short is truncated, anything else corrupted.
type ageErrors struct{ r io.Reader }

func (a ageErrors) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "last chunk") || strings.Contains(err.Error(), "unexpected EOF"):
		err = fmt.Errorf("%w: the age stream stops early: %v", ErrTruncated, err)
	default:
		err = fmt.Errorf("%w: the age stream does not authenticate: %v", ErrCorrupted, err)
	}
	return n, err
}

// Keys are what opens an encrypted backup: the password of the chunked
// AES format, the identities of the age format.
type Keys struct {
	Password   string
	Identities Identities
}
