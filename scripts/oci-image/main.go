// sb-oci-image writes the OCI image of one static binary without a container engine, the
// way ko and crane do (go-containerregistry): one layer holding the binary, a CA bundle, a
// non-root user (uid/gid 65532) and the few directories a process needs, on an empty base;
// one image per platform under a multi-platform index, in an OCI image layout, packed as a
// tar. Every byte follows from the inputs and --epoch (SOURCE_DATE_EPOCH): entries sorted,
// times set to the epoch, owners numeric, gzip without a name or time. Before it writes the
// tar, it reads the layout back and validates every digest, size and diff id.
//
// scripts/release-tools.sh builds it (cached), scripts/release.sh runs it; e2e/tests/images.rs
// reads what it wrote.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// The user the images run as: distroless' "nonroot", which the charts' securityContext names.
const (
	uid  = 65532
	user = "65532:65532"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var binaries, labels, dirs multi
	out := flag.String("out", "", "the OCI layout tar to write")
	ref := flag.String("ref", "", "the image reference the layout is named by, e.g. ghcr.io/secrets-bridge/sb-operator:0.1.0")
	entry := flag.String("entrypoint", "", "absolute path of the binary in the image, e.g. /usr/local/bin/sb-operator")
	caBundle := flag.String("ca-bundle", "", "PEM CA bundle installed as /etc/ssl/certs/ca-certificates.crt")
	epoch := flag.Int64("epoch", -1, "SOURCE_DATE_EPOCH: the time of every file, the config and the history")
	flag.Var(&binaries, "binary", "OS/ARCH=FILE, one per platform (repeat)")
	flag.Var(&labels, "label", "KEY=VALUE config label, also a manifest annotation (repeat)")
	flag.Var(&dirs, "dir", "an empty directory owned by the nonroot user, e.g. /var/lib/secrets-bridge (repeat)")
	flag.Parse()
	if *out == "" || *ref == "" || *entry == "" || *caBundle == "" || *epoch < 0 || len(binaries) == 0 {
		fail("need --out, --ref, --entrypoint, --ca-bundle, --epoch and at least one --binary")
	}
	if err := run(*out, *ref, *entry, *caBundle, time.Unix(*epoch, 0).UTC(), binaries, labels, dirs); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "sb-oci-image:", msg)
	os.Exit(1)
}

func run(out, ref, entry, caBundle string, at time.Time, binaries, labels, dirs []string) error {
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return err
	}
	labelMap := map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("--label %q is not KEY=VALUE", l)
		}
		labelMap[k] = v
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]

	index := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, b := range binaries {
		platform, file, ok := strings.Cut(b, "=")
		osName, arch, ok2 := strings.Cut(platform, "/")
		if !ok || !ok2 {
			return fmt.Errorf("--binary %q is not OS/ARCH=FILE", b)
		}
		bin, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		img, err := image(entry, bin, ca, dirs, osName, arch, at, labelMap)
		if err != nil {
			return fmt.Errorf("%s: %w", platform, err)
		}
		index = mutate.AppendManifests(index, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: osName, Architecture: arch}},
		})
	}
	index = mutate.Annotations(index, labelMap).(v1.ImageIndex)

	scratch, err := os.MkdirTemp(filepath.Dir(out), ".oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	p, err := layout.Write(scratch, empty.Index)
	if err != nil {
		return err
	}
	// ref.name is how skopeo's oci-archive:FILE:TAG and containerd's import find the image.
	if err := p.AppendIndex(index, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
		"io.containerd.image.name":          ref,
	})); err != nil {
		return err
	}
	if err := check(scratch); err != nil {
		return fmt.Errorf("the layout written does not validate: %w", err)
	}
	digest, err := index.Digest()
	if err != nil {
		return err
	}
	if err := packLayout(scratch, out, at); err != nil {
		return err
	}
	fmt.Printf("%s %s\n", ref, digest)
	return nil
}

// image is one platform's image: the layer, then a config naming the entrypoint and user.
func image(entry string, bin, ca []byte, dirs []string, osName, arch string, at time.Time, labels map[string]string) (v1.Image, error) {
	layerTar, err := rootfs(entry, bin, ca, dirs, at)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithCompressionLevel(gzip.DefaultCompression),
		tarball.WithMediaType(types.OCILayer),
	)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: at},
			CreatedBy: "scripts/oci-image: " + path.Base(entry) + ", CA certificates, nonroot user",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = osName, arch
	cf.Created = v1.Time{Time: at}
	cf.Config = v1.Config{
		Entrypoint: []string{entry},
		User:       user,
		WorkingDir: "/",
		Env: []string{
			"PATH=" + path.Dir(entry),
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
		},
		Labels: labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

type file struct {
	mode     int64
	owner    int
	body     []byte
	isDir    bool
	typeflag byte
}

// rootfs is the layer's tar: no shell, no package manager, nothing but what the binary needs.
func rootfs(entry string, bin, ca []byte, dirs []string, at time.Time) ([]byte, error) {
	files := map[string]file{
		"etc/passwd": {mode: 0o644, body: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		"etc/group":                         {mode: 0o644, body: []byte("root:x:0:\nnonroot:x:65532:\n")},
		"etc/ssl/certs/ca-certificates.crt": {mode: 0o644, body: ca},
		"home/nonroot":                      {mode: 0o700, owner: uid, isDir: true},
		"tmp":                               {mode: 0o1777, isDir: true},
		strings.TrimPrefix(entry, "/"):      {mode: 0o755, body: bin},
	}
	for _, d := range dirs {
		files[strings.Trim(d, "/")] = file{mode: 0o700, owner: uid, isDir: true}
	}
	// Every parent directory, root-owned 0755, so the tar stands alone.
	for name := range files {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if _, ok := files[dir]; !ok {
				files[dir] = file{mode: 0o755, isDir: true}
			}
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		f := files[name]
		hdr := &tar.Header{Name: name, Mode: f.mode, Uid: f.owner, Gid: f.owner, ModTime: at, Format: tar.FormatPAX}
		if f.isDir {
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// check reads the layout back as a registry client would and validates each image fully.
func check(dir string) error {
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return err
	}
	return validate.Index(top)
}

// packLayout tars the layout directory: sorted, root-owned, every time the epoch.
func packLayout(dir, out string, at time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, name := range names {
		full := filepath.Join(dir, filepath.FromSlash(name))
		info, err := os.Stat(full)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, Mode: 0o644, ModTime: at, Format: tar.FormatPAX}
		if info.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		body, err := os.ReadFile(full)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(body))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
