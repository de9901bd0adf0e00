package portal

import "strings"

// describeAgent turns a User-Agent into words a person recognises, such as
// "Chrome on Android", so a session list reads as a list of devices. It is a
// label, never a security decision: the header is whatever the client sent.
func describeAgent(ua string) string {
	if ua == "" {
		return "Unknown device"
	}
	browser := ""
	for _, b := range []struct{ token, name string }{
		{"HeadlessChrome/", "Headless Chrome"},
		{"Edg/", "Edge"},
		{"OPR/", "Opera"},
		{"SamsungBrowser/", "Samsung Internet"},
		{"Firefox/", "Firefox"},
		{"FxiOS/", "Firefox"},
		{"CriOS/", "Chrome"},
		{"Chromium/", "Chromium"},
		{"Chrome/", "Chrome"},
		{"Safari/", "Safari"},
		{"curl/", "curl"},
		{"Go-http-client/", "Go HTTP client"},
	} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	system := ""
	for _, s := range []struct{ token, name string }{
		{"iPhone", "iPhone"},
		{"iPad", "iPad"},
		{"Android", "Android"},
		{"CrOS", "ChromeOS"},
		{"Windows", "Windows"},
		{"Macintosh", "macOS"},
		{"Mac OS X", "macOS"},
		{"Linux", "Linux"},
	} {
		if strings.Contains(ua, s.token) {
			system = s.name
			break
		}
	}
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	case system != "":
		return "Browser on " + system
	}
	return "Unknown device"
}
