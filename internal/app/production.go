package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/secret"
)

// ProductionWarnings are what keyway check --production adds to the
// config's own warnings: what makes a stolen disk, or a stolen copy of the
// data directory, worse. Unlike Lint they look at the files the config
// names.
func ProductionWarnings(cfg *config.Config, getenv func(string) string) []config.Warning {
	var out []config.Warning
	warn := func(code, path, format string, args ...any) {
		out = append(out, cfg.Warn(code, path, fmt.Sprintf(format, args...)))
	}
	// The secrets kept outside the database, when they are files beside it.
	dbDir := cfg.DataDir
	if cfg.Store.Driver != "postgres" {
		dbDir = filepath.Dir(cfg.Store.Path)
	}
	for _, s := range []struct {
		src  secret.Source
		path string
		how  string
	}{
		{pepperSource(cfg), "api_keys.pepper_file", PepperEnv + " or api_keys.pepper_command"},
		{kekSource(cfg), "data_protection.kek_file", KEKEnv + " or data_protection.kek_command"},
		{auditKeySource(cfg), "audit.signing_key_file", AuditKeyEnv + " or audit.signing_key_command"},
	} {
		if s.src.Origin(getenv) != "file" || (s.path == "audit.signing_key_file" && cfg.Audit.CheckpointEvery == 0) {
			continue
		}
		if beside(s.src.File, dbDir, cfg.DataDir) {
			warn("secret-beside-database", s.path, "the %s file %s is beside the database: a copy of the data directory holds both, and with them the %s protects nothing; give it by %s, or keep the file on another disk",
				s.src.Name, s.src.File, s.src.Name, s.how)
		}
	}
	if ks := KeyStorePath(cfg); ks != "" && beside(ks, dbDir, cfg.DataDir) {
		warn("key-store-beside-database", "data_protection.key_store", "the key store %s is beside the database: a backup of the data directory holds the data keys too, and erasing a person does not reach it; set data_protection.key_store to a file backed up apart", ks)
	} else if ks == "" && cfg.DataProtection.KeyStore == "" {
		warn("key-store-in-database", "data_protection.key_store", "the data keys are in the store's own database: its backups hold them too, and erasing a person does not reach those backups; set data_protection.key_store to another database")
	}
	if st, err := os.Stat(cfg.DataDir); err == nil && st.Mode().Perm()&0o077 != 0 {
		warn("data-dir-readable", "data_dir", "the data directory %s has mode %v: other users of this machine can list it, or read what is in it; chmod 700", cfg.DataDir, st.Mode().Perm())
	}
	if passkey.SignUpMode(cfg.Passkeys.SignUp) == passkey.SignUpOpen {
		warn("open-sign-up", "passkeys.sign_up", "anyone who reaches the gateway can make an account; use invite unless that is the point")
	}
	if cfg.Audit.CheckpointEvery == 0 {
		warn("audit-checkpoints-off", "audit.checkpoint_every", "audit checkpoints are off: a truncated audit trail, or one rewritten with fresh hashes, verifies; remove checkpoint_every: 0s")
	}
	return out
}

// beside reports whether file is in dir or in dataDir (or below them).
func beside(file string, dirs ...string) bool {
	abs, err := filepath.Abs(file)
	if err != nil {
		return false
	}
	for _, d := range dirs {
		if d, err := filepath.Abs(d); err == nil && (abs == d || strings.HasPrefix(abs, d+string(filepath.Separator))) {
			return true
		}
	}
	return false
}
