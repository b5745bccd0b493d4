// Package console tests keygate's key management console in a real browser:
// each test starts the real `keygate serve` (built once by TestMain) on a free
// port with private copies of policies/ and data/, opens a tab of the one
// headless Chromium of this test binary, and works the screens as a member
// would, checking what the API then holds and decides.
//
// Without Chromium the tests skip, except under CI=true, where they fail:
// a CI that installs no browser must not pass as if the console were tested.
package console

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/keygate/keygate/tests/gateway/stack"
)

// build is the module root and the keygate binary of this run.
var build stack.TestBuild

// browser is the chromedp context of the one browser of this test binary;
// nil when there is none (then noBrowser says why).
var (
	browser   context.Context
	noBrowser error
)

// chromiumEnv names a Chromium binary other than Debian's.
const chromiumEnv = "KEYGATE_CHROMIUM"

var screenshots = flag.String("screenshots", "", "write the console's screenshots (key list, create dialog) to this directory, such as ../../docs/images")

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(stack.MainWithKeygate(withBrowser{m}, "console", &build))
}

// withBrowser starts the browser around the tests.
type withBrowser struct{ m *testing.M }

func (w withBrowser) Run() int {
	path, err := findChromium()
	if err != nil {
		noBrowser = err
		return w.m.Run()
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	// The first Run starts the browser; no timeout on this context, or the
	// timeout would end the browser.
	if err := chromedp.Do(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "console: start %s: %v\n", path, err)
		return 1
	}
	browser = ctx
	code := w.m.Run()
	if postgres.cluster != nil {
		if err := postgres.cluster.Destroy(); err != nil {
			fmt.Fprintf(os.Stderr, "console: pgtest: %v\n", err)
		}
	}
	return code
}

func findChromium() (string, error) {
	for _, p := range []string{os.Getenv(chromiumEnv), "/usr/lib/chromium/chromium"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no Chromium: install it (apt-get install -y chromium) or set " + chromiumEnv)
}

// requireBrowser skips the test without a browser, and fails it under CI.
func requireBrowser(t *testing.T) {
	t.Helper()
	if browser != nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %v", noBrowser)
	}
	t.Skip(noBrowser)
}
