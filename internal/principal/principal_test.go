package principal

import "testing"

func TestParseAndString(t *testing.T) {
	for _, s := range []string{"user:usr_abc", "service:billing", "service:a:b"} {
		p, err := Parse(s)
		if err != nil || p.String() != s {
			t.Errorf("Parse(%q) = %+v, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "user:", "admin:usr_x", "usr_x", ":x", "User:usr_x"} {
		if p, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", s, p)
		}
	}
	if User("u").String() != "user:u" || Service("s").String() != "service:s" || (Principal{}).String() != "" {
		t.Error("String")
	}
	if !User("u").IsUser() || User("u").IsService() || !Service("s").IsService() || !(Principal{}).IsZero() || (Principal{Kind: KindUser}).IsUser() {
		t.Error("predicates")
	}
}
