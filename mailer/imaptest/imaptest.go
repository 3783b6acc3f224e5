// Package imaptest gives tests a real IMAP server: Debian's Dovecot (dovecot-imapd) on free
// loopback ports with a throwaway configuration, one user, a certificate of its own for
// 127.0.0.1, removed at the end. The tests skip where Dovecot is not installed.
package imaptest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"pointpost/certtest"
)

// Binary is where Debian's dovecot-imapd puts the server.
const Binary = "/usr/sbin/dovecot"

// Dovecot is a real IMAP server for a test: Dovecot on free loopback ports, with a
// throwaway configuration and a plain-text passwd file holding one user.
type Dovecot struct {
	// TLS trusts the server's certificate, which CertFile holds in PEM (a process of its own
	// trusts it through SSL_CERT_FILE).
	TLS      *tls.Config
	CertFile string

	imapsAddr, imapAddr string // implicit TLS; STARTTLS
	user, password      string
	maildir             string // the user's Maildir, for messages written straight in
	uid, gid            int    // who owns the mail
}

// Start starts Dovecot; the test skips when the binary is not installed. Run as
// root, the mail belongs to Debian's dovecot user and the login processes run as dovenull,
// as Dovecot refuses to run them as root; run as anyone else, everything is theirs.
func Start(t testing.TB, extra string) *Dovecot {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("dovecot is not installed (%v): apt-get install dovecot-imapd", err)
	}
	// Unix socket paths are short; t.TempDir()'s can be too long for base_dir.
	dir, err := os.MkdirTemp("", "dv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Dovecot reads its certificate and key from dir; clients trust the certificate alone.
	cert := certtest.New(t, nil, "127.0.0.1")
	cert.Write(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	internal, login, mailUser := me.Username, me.Username, me
	if os.Geteuid() == 0 {
		internal, login = "dovecot", "dovenull"
		if mailUser, err = user.Lookup("dovecot"); err != nil {
			t.Skipf("running as root needs Debian's dovecot user: %v", err)
		}
	}
	uid, _ := strconv.Atoi(mailUser.Uid)
	gid, _ := strconv.Atoi(mailUser.Gid)
	group, err := user.LookupGroupId(mailUser.Gid)
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, "Maildir", "new"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(home, "Maildir", d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	chownTree(t, home, uid, gid)
	d := &Dovecot{user: "pp", password: "s3cret", maildir: filepath.Join(home, "Maildir"), uid: uid, gid: gid}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(d.user+":{PLAIN}"+d.password+"::::::\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	imapsPort, imapPort := freePort(t), freePort(t)
	conf := fmt.Sprintf(dovecotConf, dir, internal, login, uid, gid, imapsPort, imapPort, group.Name, extra)
	if err := os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Binary, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	out, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot log:\n%s", log)
		}
	})
	d.TLS = &tls.Config{RootCAs: cert.Pool(), ServerName: "127.0.0.1"}
	d.CertFile = filepath.Join(dir, "cert.pem")
	d.imapsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(imapsPort))
	d.imapAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(imapPort))
	d.awaitGreeting(t, dir)
	return d
}

// awaitGreeting waits until the login process greets, bounded, since a broken configuration
// never does.
func (d *Dovecot) awaitGreeting(t testing.TB, dir string) {
	t.Helper()
	for i := 0; ; i++ {
		c, err := tls.Dial("tcp", d.imapsAddr, d.TLS)
		if err == nil {
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil && strings.HasPrefix(line, "* OK") {
				return
			}
		}
		if i == 500 {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			serr, _ := os.ReadFile(filepath.Join(dir, "stderr"))
			t.Fatalf("dovecot did not start: %v\n%s\n%s", err, log, serr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dovecotConf is the throwaway configuration: its directory, the internal, login and mail
// users, the mail's uid and gid, the IMAPS and IMAP ports, the internal group, and what a
// test adds.
const dovecotConf = `base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login
default_internal_user = %[2]s
default_internal_group = %[8]s
default_login_user = %[3]s
first_valid_uid = %[4]d
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[4]d gid=%[5]d home=%[1]s/home
}
mail_location = maildir:~/Maildir
service imap-login {
  chroot =
  inet_listener imap {
    port = %[7]d
  }
  inet_listener imaps {
    port = %[6]d
    ssl = yes
  }
}
service anvil {
  chroot =
}
%[9]s
`

func chownTree(t testing.TB, root string, uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL is the mailbox URL of the user's INBOX.
func (d *Dovecot) URL(starttls bool) string {
	if starttls {
		return "imap://" + d.user + ":" + d.password + "@" + d.imapAddr + "/INBOX"
	}
	return "imaps://" + d.user + ":" + d.password + "@" + d.imapsAddr + "/INBOX"
}

// Client is a logged-in IMAP client, for appending and looking.
func (d *Dovecot) Client(t testing.TB) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(d.imapsAddr, &imapclient.Options{TLSConfig: d.TLS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(d.user, d.password).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// Append adds messages to the INBOX over IMAP, as a client would.
func (d *Dovecot) Append(t testing.TB, msgs ...[]byte) {
	t.Helper()
	c := d.Client(t)
	for _, m := range msgs {
		a := c.Append("INBOX", int64(len(m)), nil)
		if _, err := a.Write(m); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	c.Logout()
}

// WriteMaildir puts messages straight into the Maildir, as an MTA delivering there would:
// much faster than APPEND for thousands.
func (d *Dovecot) WriteMaildir(t testing.TB, msgs [][]byte) {
	t.Helper()
	for i, m := range msgs {
		p := filepath.Join(d.maildir, "new", fmt.Sprintf("1700000000.M%dP1.test", i))
		if err := os.WriteFile(p, m, 0o600); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			if err := os.Chown(p, d.uid, d.gid); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Count is how many messages a folder holds (0 when it does not exist).
func (d *Dovecot) Count(t testing.TB, folder string) int {
	t.Helper()
	c := d.Client(t)
	defer c.Logout()
	st, err := c.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return 0
	}
	return int(*st.NumMessages)
}
