package main

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// compose.yaml cannot run here (no Docker engine); check what it says.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Build    any               `yaml:"build"`
			Image    string            `yaml:"image"`
			Profiles []string          `yaml:"profiles"`
			Secrets  []string          `yaml:"secrets"`
			Volumes  []string          `yaml:"volumes"`
			Env      map[string]string `yaml:"environment"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	bk, pg, minio := c.Services["backupkit"], c.Services["postgres"], c.Services["minio"]
	if bk.Build == nil || pg.Image == "" || minio.Image == "" {
		t.Fatalf("services: %+v", c.Services)
	}
	if strings.Join(minio.Profiles, ",") != "s3" || len(bk.Profiles) != 0 {
		t.Fatal("the S3 server must be an optional profile, the sidecar not")
	}
	vols := strings.Join(bk.Volumes, " ")
	if !strings.Contains(vols, "./examples/compose-config.yaml:/etc/backupkit/config.yaml") || !strings.Contains(vols, "backups:/backups") {
		t.Fatalf("sidecar volumes %v", bk.Volumes)
	}
	for _, v := range []string{"pgdata", "backups"} {
		if _, ok := c.Volumes[v]; !ok {
			t.Fatalf("volume %s not declared", v)
		}
	}
	for _, img := range []string{pg.Image, minio.Image} {
		if i := strings.LastIndex(img, ":"); i < 0 || strings.HasSuffix(img, ":latest") {
			t.Fatalf("image %s is not pinned to a tag", img)
		}
	}
	for _, s := range []string{"db_password", "backup_key", "s3_access_key", "s3_secret_key"} {
		if c.Secrets[s].File == "" || !strings.Contains(strings.Join(bk.Secrets, ","), s) {
			t.Fatalf("secret %s not declared or not given to the sidecar", s)
		}
	}
	if pg.Env["POSTGRES_PASSWORD_FILE"] != "/run/secrets/db_password" {
		t.Fatal("postgres does not take its password from the secret")
	}
	cfg, _ := os.ReadFile("../../examples/compose-config.yaml")
	if !strings.Contains(string(cfg), "/db_password") || !strings.Contains(string(cfg), "path: /backups") {
		t.Fatal("the mounted config does not use the secret and volume")
	}
}

// The image builds the binary with `make build`, as developers do, and
// runs it as a non-root daemon with a health check.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	d := string(b)
	for _, want := range []string{"RUN make build VERSION=${VERSION}", "COPY --from=build /src/bin/backupkit", "USER 10001",
		`ENTRYPOINT ["backupkit"]`, `CMD ["daemon", "-c", "/etc/backupkit/config.yaml"]`, "BACKUPKIT_LISTEN=:9090",
		`HEALTHCHECK --interval=30s --timeout=10s --start-period=1m CMD ["backupkit", "healthcheck"]`,
		"ARG GO_IMAGE=", "ARG BASE_IMAGE=", "ARG PG_SOURCE=pgdg", "apt.postgresql.org", "libdeflate-dev"} {
		if !strings.Contains(d, want) {
			t.Fatalf("Dockerfile lacks %q", want)
		}
	}
	if strings.Contains(d, "# syntax=") || strings.Contains(d, "wget") || strings.Contains(d, "curl -") && !strings.Contains(d, "apt-get purge -y curl") {
		t.Fatal("the Dockerfile pulls a frontend or keeps a download tool in the image")
	}
	di, _ := os.ReadFile("../../.dockerignore")
	for _, want := range []string{"backups/", "backupkit.yaml", "secrets/", ".tools/"} {
		if !strings.Contains(string(di), want) {
			t.Fatalf(".dockerignore lacks %s", want)
		}
	}
	mk, _ := os.ReadFile("../../Makefile")
	for _, want := range []string{"build -trimpath $(BUILDFLAGS) -o $(BIN) ./cmd/backupkit", "-linkmode external -extldflags -static"} {
		if !strings.Contains(string(mk), want) {
			t.Fatalf("Makefile build target changed (no %q); keep the Dockerfile in step", want)
		}
	}
}
