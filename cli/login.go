package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
)

func newLoginCmd() *cobra.Command {
	var addr, ak, sk string
	cmd := &cobra.Command{
		Use:   "login [-u AK -p SK] [--addr URL]",
		Short: "Check and save your access and secret keys",
		Long: `login checks the keys against the management API and saves them, with the
API's address, in $QUFOP_CONFIG or ~/.qufop/config.json (readable by you only).
Missing keys are asked for on a terminal. QUFOP_ADDR, QUFOP_ACCESS_KEY and
QUFOP_SECRET_KEY override the saved login in every other command.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			saved, path, err := readLoginConfig()
			if err != nil && !cmd.Flags().Changed("addr") {
				// A damaged file is replaced, but its address is lost.
				fmt.Fprintf(cmd.ErrOrStderr(), "qufop: %v\n", err)
			}
			if path == "" {
				if path, err = loginConfigPath(); err != nil {
					return err
				}
			}
			if !cmd.Flags().Changed("addr") {
				addr = firstNonEmpty(os.Getenv(envAddr), saved.Addr, client.DefaultAddr)
			}
			if _, err := client.BaseURL(addr); err != nil {
				return err
			}
			ak = firstNonEmpty(ak, os.Getenv(envAccessKey))
			sk = firstNonEmpty(sk, os.Getenv(envSecretKey))
			if ak == "" || sk == "" {
				if ak, sk, err = promptKeys(cmd, ak, sk); err != nil {
					return err
				}
			}
			c := client.New(addr, auth.Credentials{AccessKey: ak, SecretKey: sk})
			user, err := c.WhoAmI(cmd.Context())
			if err != nil {
				return fmt.Errorf("login failed: %w", err)
			}
			if err := writeLoginConfig(path, loginConfig{Addr: addr, AccessKey: ak, SecretKey: sk}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged in to %s as %s; keys saved in %s\n", addr, user, path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&ak, "access-key", "u", "", "access key (AK)")
	cmd.Flags().StringVarP(&sk, "secret-key", "p", "", "secret key (SK)")
	cmd.Flags().StringVar(&addr, "addr", client.DefaultAddr, "address of the management API (host:port or URL)")
	return cmd
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// promptKeys asks for the missing keys on the terminal; the secret key is
// not echoed.
func promptKeys(cmd *cobra.Command, ak, sk string) (string, string, error) {
	in := cmd.InOrStdin()
	if !isTerminal(in) {
		return "", "", errors.New("login needs -u <access key> -p <secret key> when not run on a terminal")
	}
	out := cmd.ErrOrStderr()
	r := bufio.NewReader(in)
	if ak == "" {
		fmt.Fprint(out, "Access key: ")
		line, err := r.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", "", err
		}
		ak = strings.TrimSpace(line)
	}
	if sk == "" {
		fmt.Fprint(out, "Secret key: ")
		b, err := term.ReadPassword(int(in.(*os.File).Fd()))
		fmt.Fprintln(out)
		if err != nil {
			return "", "", fmt.Errorf("reading the secret key: %v", err)
		}
		sk = strings.TrimSpace(string(b))
	}
	if ak == "" || sk == "" {
		return "", "", errors.New("login needs both an access key and a secret key")
	}
	return ak, sk, nil
}
