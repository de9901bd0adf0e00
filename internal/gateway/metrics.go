package gateway

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are deliberately low-cardinality: labelled by route and status
// class, never by path, client or key.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

var classes = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyway_requests_total",
			Help: "Requests served, by route and status class. Route is empty for own endpoints and unmatched paths.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyway_request_duration_seconds",
			Help:    "Time from request to last byte, by route and status class.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "code"}),
	}
	// A gateway built by a reload counts on in the series of the one it
	// replaces.
	if err := reg.Register(m.requests); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, err
		}
		m.requests = existing
	}
	if err := reg.Register(m.duration); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*prometheus.HistogramVec)
		if !ok {
			return nil, err
		}
		m.duration = existing
	}
	return m, nil
}

// bind resolves the route's series once, so the hot path does no label
// hashing or allocation.
func (m *metrics) bind(r *route) {
	for i, c := range classes {
		r.obs[i] = m.duration.WithLabelValues(r.Name, c)
		r.count[i] = m.requests.WithLabelValues(r.Name, c)
	}
}

func (m *metrics) unrouted(status int) {
	class := status / 100
	if class > 5 {
		class = 0
	}
	m.requests.WithLabelValues("", classes[class]).Inc()
}
