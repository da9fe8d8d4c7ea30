package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// routeKey carries the *routeInfo of a request: the route pattern that
// served it, recorded by the handler itself so that middlewares which copy
// the request (r.WithContext) between here and the mux cannot lose it.
type routeKey struct{}

type routeInfo struct{ pattern string }

// routed records pattern as the request's route, then runs h. A /v1/
// operation the portal passed on is recorded as "portal <pattern>".
func (a *API) routed(pattern string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ri, ok := r.Context().Value(routeKey{}).(*routeInfo); ok {
			if strings.HasPrefix(ri.pattern, PortalRoute) {
				ri.pattern = PortalRoute + " " + pattern
			} else {
				ri.pattern = pattern
			}
		}
		h.ServeHTTP(w, r)
	})
}

// PortalRoute labels the portal's requests in the access log and metrics.
const PortalRoute = "portal"

// SetRoute records the route of a request served outside the API's muxes
// (the portal's pages: "portal GET /portal/"), for the access log and the
// metrics; it must be a bounded set of names.
func SetRoute(r *http.Request, pattern string) {
	if ri, ok := r.Context().Value(routeKey{}).(*routeInfo); ok {
		ri.pattern = pattern
	}
}

// quietRoutes are logged at debug level: probes and scrapes every few
// seconds would drown the access log.
var quietRoutes = map[string]bool{"GET /livez": true, "GET /readyz": true, "GET /metrics": true}

// observe writes one access log line and the request metrics per request:
// method, route pattern, status, duration. Never bodies, query strings or
// headers (no Authorization).
func (a *API) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &routeInfo{}
		sw := &statusWriter{ResponseWriter: w}
		ctx, span := a.serverSpan(r)
		next.ServeHTTP(sw, r.WithContext(context.WithValue(ctx, routeKey{}, ri)))
		d := time.Since(start)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		route := ri.pattern
		if route == "" {
			route = "unmatched"
		}
		endServerSpan(span, r.Method, route, status)
		a.metrics.HTTPRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		a.metrics.HTTPDuration.WithLabelValues(route).Observe(d.Seconds())
		lvl := zapcore.InfoLevel
		if quietRoutes[route] {
			lvl = zapcore.DebugLevel
		}
		if ce := a.log.Check(lvl, "http request"); ce != nil {
			fields := []zap.Field{zap.String("method", r.Method), zap.String("route", route),
				zap.Int("status", status), zap.Float64("duration_s", d.Seconds())}
			if span != nil {
				fields = append(fields, zap.String("trace_id", span.SpanContext().TraceID().String()))
			}
			ce.Write(fields...)
		}
	})
}

// recoverPanics turns a handler panic into a logged 500 problem.
func (a *API) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.Error("handler panicked", zap.String("method", r.Method), zap.String("panic", fmt.Sprint(v)), zap.Stack("stack"))
				writeProblem(w, problem(http.StatusInternalServerError, TypeInternal, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func cutMethod(pattern string) (method, path string, ok bool) {
	method, path, ok = strings.Cut(pattern, " ")
	return method, path, ok
}

func (a *API) methodNotAllowed(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		methods := slices.Clone(a.allow[path])
		if slices.Contains(methods, http.MethodGet) {
			methods = append(methods, http.MethodHead)
		}
		slices.Sort(methods)
		w.Header().Set("Allow", strings.Join(methods, ", "))
		writeProblem(w, problem(http.StatusMethodNotAllowed, TypeMethodNotAllowed,
			fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, path, strings.Join(methods, ", "))))
	}
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, problem(http.StatusNotFound, TypeNotFound, "no such endpoint"))
}

func livez(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (a *API) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if a.ready == nil || !a.ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}
