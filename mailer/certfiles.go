package mailer

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// CertFiles serves the certificate in a PEM pair of files, read again when either file
// changes (a renewal writes new ones, or renames new ones over them). A pair that fails to
// load (a renewal half written: the new certificate beside the old key) keeps the
// certificate served before, and is tried again at the next handshake.
type CertFiles struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	certStat os.FileInfo
	keyStat  os.FileInfo
}

// NewCertFiles loads the pair; returns an error when it does not load.
func NewCertFiles(certFile, keyFile string, log *slog.Logger) (*CertFiles, error) {
	c := &CertFiles{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CertFiles) load() error {
	cs, err := os.Stat(c.certFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	ks, err := os.Stat(c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.certStat, c.keyStat = &cert, cs, ks
	return nil
}

// GetCertificate is tls.Config.GetCertificate: the pair as the files hold it now.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err1 := os.Stat(c.certFile)
	ks, err2 := os.Stat(c.keyFile)
	if err1 == nil && err2 == nil && (changed(c.certStat, cs) || changed(c.keyStat, ks)) {
		if err := c.load(); err != nil {
			c.certStat, c.keyStat = cs, ks // tried again when a file changes again
			c.log.Warn("the new TLS certificate does not load; serving the previous one", "err", err)
		} else {
			c.log.Info("TLS certificate reloaded", "file", c.certFile, "not_after", c.cert.Leaf.NotAfter)
		}
	}
	return c.cert, nil
}

// changed reports whether a file is another one, or was written, since was.
func changed(was, now os.FileInfo) bool {
	return !os.SameFile(was, now) || !was.ModTime().Equal(now.ModTime()) || was.Size() != now.Size()
}
