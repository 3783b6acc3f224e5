package mailer

// RSA signing in the system's OpenSSL libcrypto, which signs about four times as fast as
// crypto/rsa. The library is opened at run time, not linked, so pointpost builds where
// only a C compiler and libc are installed; where it is missing, crypto/rsa signs. Nothing
// cryptographic is written here: the digest comes from Go, the signature from OpenSSL's
// EVP_PKEY_sign (PKCS#1 v1.5, SHA-256), and each key is checked against crypto/rsa's
// verifier before it is used.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// OpenSSL's types are opaque here: its headers are not needed to build.
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct evp_md_st EVP_MD;

enum { pp_EVP_PKEY_RSA = 6, pp_RSA_PKCS1_PADDING = 1, pp_OPENSSL_VERSION = 0 };

// pp_libcrypto is an opened libcrypto and the OpenSSL 3 functions used from it.
typedef struct {
	void *lib;
	EVP_PKEY *(*d2i_PrivateKey)(int, EVP_PKEY **, const unsigned char **, long);
	int (*EVP_PKEY_get_size)(const EVP_PKEY *);
	void (*EVP_PKEY_free)(EVP_PKEY *);
	EVP_PKEY_CTX *(*EVP_PKEY_CTX_new)(EVP_PKEY *, void *);
	void (*EVP_PKEY_CTX_free)(EVP_PKEY_CTX *);
	int (*EVP_PKEY_sign_init)(EVP_PKEY_CTX *);
	int (*EVP_PKEY_CTX_set_rsa_padding)(EVP_PKEY_CTX *, int);
	int (*EVP_PKEY_CTX_set_signature_md)(EVP_PKEY_CTX *, const EVP_MD *);
	const EVP_MD *(*EVP_sha256)(void);
	int (*EVP_PKEY_sign)(EVP_PKEY_CTX *, unsigned char *, size_t *, const unsigned char *, size_t);
	unsigned long (*ERR_get_error)(void);
	void (*ERR_clear_error)(void);
	void (*ERR_error_string_n)(unsigned long, char *, size_t);
	const char *(*OpenSSL_version)(int);
} pp_libcrypto;

// pp_open opens the library name and finds its functions; NULL, with the reason in err,
// when it is not there or lacks one (an OpenSSL before 3.0 does).
static pp_libcrypto *pp_open(const char *name, char *err, size_t errlen) {
	void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		const char *why = dlerror();
		snprintf(err, errlen, "%s", why ? why : name);
		return NULL;
	}
	pp_libcrypto *c = calloc(1, sizeof *c);
	if (c == NULL) {
		dlclose(lib);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->lib = lib;
	struct { void **fn; const char *name; } syms[] = {
		{(void **)&c->d2i_PrivateKey, "d2i_PrivateKey"},
		{(void **)&c->EVP_PKEY_get_size, "EVP_PKEY_get_size"},
		{(void **)&c->EVP_PKEY_free, "EVP_PKEY_free"},
		{(void **)&c->EVP_PKEY_CTX_new, "EVP_PKEY_CTX_new"},
		{(void **)&c->EVP_PKEY_CTX_free, "EVP_PKEY_CTX_free"},
		{(void **)&c->EVP_PKEY_sign_init, "EVP_PKEY_sign_init"},
		{(void **)&c->EVP_PKEY_CTX_set_rsa_padding, "EVP_PKEY_CTX_set_rsa_padding"},
		{(void **)&c->EVP_PKEY_CTX_set_signature_md, "EVP_PKEY_CTX_set_signature_md"},
		{(void **)&c->EVP_sha256, "EVP_sha256"},
		{(void **)&c->EVP_PKEY_sign, "EVP_PKEY_sign"},
		{(void **)&c->ERR_get_error, "ERR_get_error"},
		{(void **)&c->ERR_clear_error, "ERR_clear_error"},
		{(void **)&c->ERR_error_string_n, "ERR_error_string_n"},
		{(void **)&c->OpenSSL_version, "OpenSSL_version"},
	};
	for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
		*syms[i].fn = dlsym(lib, syms[i].name);
		if (*syms[i].fn == NULL) {
			snprintf(err, errlen, "%s has no %s (OpenSSL 3 is needed)", name, syms[i].name);
			dlclose(lib);
			free(c);
			return NULL;
		}
	}
	return c;
}

static const char *pp_version(const pp_libcrypto *c) { return c->OpenSSL_version(pp_OPENSSL_VERSION); }

// The error queue is per thread: each call below clears it first and reads it before
// returning to Go, which may move on to another thread. 0 is success; a failure with
// nothing queued is reported as ~0.
static unsigned long pp_error(const pp_libcrypto *c) {
	unsigned long e = c->ERR_get_error();
	return e ? e : ~0UL;
}

static void pp_error_string(const pp_libcrypto *c, unsigned long e, char *buf, size_t len) {
	if (e == ~0UL) {
		snprintf(buf, len, "failed without a reason");
		return;
	}
	c->ERR_error_string_n(e, buf, len);
}

// pp_load_rsa reads a PKCS#1 DER private key.
static unsigned long pp_load_rsa(const pp_libcrypto *c, const unsigned char *der, long len, EVP_PKEY **key, int *size) {
	c->ERR_clear_error();
	*key = c->d2i_PrivateKey(pp_EVP_PKEY_RSA, NULL, &der, len);
	if (*key == NULL)
		return pp_error(c);
	*size = c->EVP_PKEY_get_size(*key);
	return 0;
}

// pp_new_sign_ctx makes a context that signs SHA-256 digests with key, PKCS#1 v1.5. It
// may sign any number of times, by one thread at a time.
static unsigned long pp_new_sign_ctx(const pp_libcrypto *c, EVP_PKEY *key, EVP_PKEY_CTX **ctx) {
	c->ERR_clear_error();
	*ctx = c->EVP_PKEY_CTX_new(key, NULL);
	if (*ctx == NULL)
		return pp_error(c);
	if (c->EVP_PKEY_sign_init(*ctx) <= 0 || c->EVP_PKEY_CTX_set_rsa_padding(*ctx, pp_RSA_PKCS1_PADDING) <= 0 ||
	    c->EVP_PKEY_CTX_set_signature_md(*ctx, c->EVP_sha256()) <= 0) {
		unsigned long e = pp_error(c);
		c->EVP_PKEY_CTX_free(*ctx);
		*ctx = NULL;
		return e;
	}
	return 0;
}

static unsigned long pp_sign(const pp_libcrypto *c, EVP_PKEY_CTX *ctx, const unsigned char *digest, size_t dlen,
                             unsigned char *sig, size_t *siglen) {
	c->ERR_clear_error();
	if (c->EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) <= 0)
		return pp_error(c);
	return 0;
}

static void pp_free_ctx(const pp_libcrypto *c, EVP_PKEY_CTX *ctx) { c->EVP_PKEY_CTX_free(ctx); }
static void pp_free_key(const pp_libcrypto *c, EVP_PKEY *key) { c->EVP_PKEY_free(key); }
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// libcrypto is an opened OpenSSL 3 libcrypto. It is never closed: keys made with it may
// live as long as the process.
type libcrypto struct {
	c       *C.pp_libcrypto
	version string
}

// openLibcrypto opens the first of names the dynamic linker finds. Returns an error
// naming what failed when none is there or the one found is not OpenSSL 3.
func openLibcrypto(names ...string) (*libcrypto, error) {
	var errs []string
	for _, name := range names {
		cname := C.CString(name)
		var why [256]C.char
		c := C.pp_open(cname, &why[0], C.size_t(len(why)))
		C.free(unsafe.Pointer(cname))
		if c == nil {
			errs = append(errs, C.GoString(&why[0]))
			continue
		}
		return &libcrypto{c: c, version: C.GoString(C.pp_version(c))}, nil
	}
	return nil, errors.New("libcrypto: " + strings.Join(errs, "; "))
}

// String names the library's version, for the log.
func (l *libcrypto) String() string { return "libcrypto (" + l.version + ")" }

// err describes OpenSSL error code e.
func (l *libcrypto) err(what string, e C.ulong) error {
	var buf [256]C.char
	C.pp_error_string(l.c, e, &buf[0], C.size_t(len(buf)))
	return fmt.Errorf("libcrypto: %s: %s", what, C.GoString(&buf[0]))
}

// libcryptoRSA is an RSA private key held by libcrypto. It is safe for concurrent use.
type libcryptoRSA struct {
	held *libcryptoHeld
	size int
}

// libcryptoHeld is the C memory of a libcryptoRSA, freed once the key is unreachable.
type libcryptoHeld struct {
	lib  *libcrypto
	pkey *C.EVP_PKEY
	mu   sync.Mutex
	// idle are signing contexts not in use: one is made per concurrent signature and kept.
	idle []*C.EVP_PKEY_CTX
}

// maxIdleSignCtx bounds the contexts kept: about as many as signatures run at once.
const maxIdleSignCtx = 64

// rsaKey hands key to libcrypto and checks a signature it makes verifies with
// crypto/rsa. Returns an error saying why libcrypto cannot sign with it.
func (l *libcrypto) rsaKey(key *rsa.PrivateKey) (*libcryptoRSA, error) {
	der := x509.MarshalPKCS1PrivateKey(key)
	defer clear(der)
	return l.loadRSA(der, &key.PublicKey)
}

// loadRSA reads a PKCS#1 DER private key into libcrypto and checks a signature it makes
// verifies with pub. Returns an error saying why libcrypto cannot sign with it.
func (l *libcrypto) loadRSA(der []byte, pub *rsa.PublicKey) (*libcryptoRSA, error) {
	if len(der) == 0 {
		return nil, errors.New("libcrypto: no RSA key")
	}
	var pkey *C.EVP_PKEY
	var size C.int
	if e := C.pp_load_rsa(l.c, (*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)), &pkey, &size); e != 0 {
		return nil, l.err("reading the RSA key", e)
	}
	k := &libcryptoRSA{held: &libcryptoHeld{lib: l, pkey: pkey}, size: int(size)}
	runtime.AddCleanup(k, (*libcryptoHeld).free, k.held)

	digest := sha256.Sum256([]byte("pointpost checks libcrypto signs with this key"))
	sig, err := k.sign(nil, digest[:])
	if err != nil {
		return nil, err
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		return nil, fmt.Errorf("libcrypto: its signature does not verify with the key's public half: %w", err)
	}
	return k, nil
}

// sign appends the PKCS#1 v1.5 signature of a SHA-256 digest to dst.
func (k *libcryptoRSA) sign(dst, digest []byte) ([]byte, error) {
	defer runtime.KeepAlive(k) // its cleanup frees the C memory used below
	h := k.held
	h.mu.Lock()
	var ctx *C.EVP_PKEY_CTX
	if n := len(h.idle); n > 0 {
		ctx, h.idle = h.idle[n-1], h.idle[:n-1]
	}
	h.mu.Unlock()
	if ctx == nil {
		if e := C.pp_new_sign_ctx(h.lib.c, h.pkey, &ctx); e != 0 {
			return dst, h.lib.err("preparing to sign", e)
		}
	}
	start := len(dst)
	dst = append(dst, make([]byte, k.size)...)
	siglen := C.size_t(k.size)
	e := C.pp_sign(h.lib.c, ctx, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&dst[start])), &siglen)
	if e != 0 {
		C.pp_free_ctx(h.lib.c, ctx) // not trusted again
		return dst[:start], h.lib.err("signing", e)
	}
	h.mu.Lock()
	if len(h.idle) < maxIdleSignCtx {
		h.idle, ctx = append(h.idle, ctx), nil
	}
	h.mu.Unlock()
	if ctx != nil {
		C.pp_free_ctx(h.lib.c, ctx)
	}
	return dst[:start+int(siglen)], nil
}

func (h *libcryptoHeld) free() {
	for _, ctx := range h.idle {
		C.pp_free_ctx(h.lib.c, ctx)
	}
	h.idle = nil
	C.pp_free_key(h.lib.c, h.pkey)
}
