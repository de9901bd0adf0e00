// Package demo is the built-in weather API that `keyway serve` runs with no
// configuration, so the gateway has something real to protect: a free,
// low-value API of the kind whose keys exist mostly to meter and limit.
//
// It runs as a real HTTP server on a loopback port inside the keyway process,
// so demo traffic takes the same proxy path as any upstream. It trusts the
// X-Keyway-Subject header because only the gateway can reach it; a real
// upstream should verify the gateway's signed assertion instead.
package demo

import (
	"encoding/json"
	"hash/fnv"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Server is the demo weather API. The zero value is not usable; use New.
type Server struct {
	now func() time.Time

	mu     sync.Mutex
	cities map[string][]string // saved cities by subject
}

// New returns a demo server. now defaults to time.Now.
func New(now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{now: now, cities: make(map[string][]string)}
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/forecast", s.forecast)
	mux.HandleFunc("GET /v1/history", s.history)
	mux.HandleFunc("GET /v1/me", s.me)
	mux.HandleFunc("POST /v1/me/cities", s.addCity)
	return mux
}

type day struct {
	Date       string  `json:"date"`
	Summary    string  `json:"summary"`
	HighC      float64 `json:"high_c"`
	LowC       float64 `json:"low_c"`
	PrecipProb float64 `json:"precip_probability"`
}

var summaries = []string{"sunny", "partly cloudy", "cloudy", "light rain", "rain", "windy", "fog", "snow"}

// weather derives stable, plausible weather for a city and date, so the demo
// needs no data files and answers the same twice.
func weather(city string, date time.Time) day {
	h := fnv.New64a()
	_, _ = h.Write([]byte(strings.ToLower(city) + date.Format(time.DateOnly)))
	v := h.Sum64()
	// FNV's high bits barely move between similar inputs; a finaliser
	// (from MurmurHash3) spreads every input bit over the word.
	v ^= v >> 33
	v *= 0xff51afd7ed558ccd
	v ^= v >> 33
	high := float64(int(v%300))/10 + 2
	return day{
		Date:       date.Format(time.DateOnly),
		Summary:    summaries[(v>>16)%uint64(len(summaries))],
		HighC:      high,
		LowC:       high - float64((v>>24)%80)/10 - 2,
		PrecipProb: float64((v>>32)%100) / 100,
	}
}

// cityParam validates ?city=: letters, spaces, dots, apostrophes and
// hyphens, 1 to 64 characters.
func cityParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	city := strings.TrimSpace(r.URL.Query().Get("city"))
	if city == "" || len(city) > 64 || strings.IndexFunc(city, func(c rune) bool {
		return !unicode.IsLetter(c) && c != ' ' && c != '-' && c != '.' && c != '\''
	}) >= 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "city must be 1 to 64 letters, spaces, dots or hyphens"})
		return "", false
	}
	return city, true
}

func (s *Server) forecast(w http.ResponseWriter, r *http.Request) {
	city, ok := cityParam(w, r)
	if !ok {
		return
	}
	today := s.now().UTC().Truncate(24 * time.Hour)
	days := make([]day, 3)
	for i := range days {
		days[i] = weather(city, today.AddDate(0, 0, i))
	}
	writeJSON(w, http.StatusOK, map[string]any{"city": city, "days": days})
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	city, ok := cityParam(w, r)
	if !ok {
		return
	}
	today := s.now().UTC().Truncate(24 * time.Hour)
	days := make([]day, 7)
	for i := range days {
		days[i] = weather(city, today.AddDate(0, 0, -7+i))
	}
	writeJSON(w, http.StatusOK, map[string]any{"city": city, "days": days})
}

func subject(w http.ResponseWriter, r *http.Request) (string, bool) {
	sub := r.Header.Get("X-Keyway-Subject")
	if sub == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no signed-in user"})
		return "", false
	}
	return sub, true
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	cities := slices.Clone(s.cities[sub])
	s.mu.Unlock()
	if cities == nil {
		cities = []string{}
	}
	// billing and internal_notes are deliberately here: they are the kind of
	// data a browser client has no business seeing, for the BFF's field filter.
	writeJSON(w, http.StatusOK, map[string]any{
		"name":   r.Header.Get("X-Keyway-Name"),
		"cities": cities,
		"billing": map[string]any{
			"plan": "free", "card_last4": "4242", "next_invoice": "2027-01-01",
		},
		"internal_notes": "demo account; no real billing",
	})
}

func (s *Server) addCity(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	var body struct {
		City string `json:"city"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"city": "..."}`})
		return
	}
	q := r.URL.Query()
	q.Set("city", body.City)
	r.URL.RawQuery = q.Encode()
	city, ok := cityParam(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	list := s.cities[sub]
	if !slices.Contains(list, city) && len(list) < 20 {
		list = append(list, city)
		s.cities[sub] = list
	}
	out := slices.Clone(list)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"cities": out})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
