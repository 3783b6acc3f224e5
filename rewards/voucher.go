package rewards

import "crypto/rand"

// voucherAlphabet is Crockford's base 32: no I, L, O or U, so a code read aloud or typed
// from paper comes out right.
const voucherAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewVoucher returns the code a redemption gives the consumer to claim her reward, as
// PP-XXXX-XXXX: 40 random bits.
func NewVoucher() string {
	var b [8]byte
	rand.Read(b[:]) // crypto/rand does not fail
	code := []byte("PP-XXXX-XXXX")
	for i, j := 0, 3; i < len(b); i, j = i+1, j+1 {
		if code[j] == '-' {
			j++
		}
		code[j] = voucherAlphabet[b[i]%32]
	}
	return string(code)
}
