//go:build !cgo

package mailer

import (
	"crypto/rsa"
	"errors"
)

// Without cgo libcrypto cannot be called, and crypto/rsa signs every RSA key.

type libcrypto struct{}

type libcryptoRSA struct{}

func openLibcrypto(...string) (*libcrypto, error) {
	return nil, errors.New("libcrypto: pointpost was built without cgo")
}

func (*libcrypto) String() string { return "libcrypto" }

func (*libcrypto) rsaKey(*rsa.PrivateKey) (*libcryptoRSA, error) {
	return nil, errors.New("libcrypto: pointpost was built without cgo")
}

func (*libcryptoRSA) sign(dst, _ []byte) ([]byte, error) {
	return dst, errors.New("libcrypto: pointpost was built without cgo")
}
