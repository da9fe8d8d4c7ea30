package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
)

// Bar is one horizontal bar of a chart.
type Bar struct {
	Label string
	Value float64
	// Text is printed after the bar (the value, formatted).
	Text  string
	Color color.RGBA
}

// Panel is a titled group of bars on one scale.
type Panel struct {
	Title string
	Bars  []Bar
	// Log draws the bars on a logarithmic scale (log10(1+v)), for values
	// that span orders of magnitude such as latencies.
	Log bool
}

// Chart colours.
var (
	colAlways  = color.RGBA{0x2b, 0x6c, 0xb0, 0xff}
	colDefault = color.RGBA{0xe0, 0x7a, 0x1f, 0xff}
	colR3      = color.RGBA{0x2e, 0x8b, 0x57, 0xff}
	colLimit   = color.RGBA{0x88, 0x88, 0x88, 0xff}
	colText    = color.RGBA{0x20, 0x20, 0x20, 0xff}
	colNote    = color.RGBA{0x60, 0x60, 0x60, 0xff}
	colRule    = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

const (
	chartW     = 1400
	textScale  = 2
	rowH       = 24
	barH       = 16
	margin     = 20
	valueSpace = 260
)

// DrawChart draws the panels one under the other, with a title and notes.
func DrawChart(title string, notes []string, panels []Panel) *image.RGBA {
	labelW := 0
	rows := 0
	for _, p := range panels {
		rows += len(p.Bars) + 2
		for _, b := range p.Bars {
			labelW = max(labelW, textWidth(b.Label, textScale))
		}
	}
	h := margin*2 + rowH*(2+len(notes)) + rows*rowH
	img := image.NewRGBA(image.Rect(0, 0, chartW, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	y := margin
	drawText(img, margin, y, title, textScale+1, colText)
	y += rowH + 8
	for _, n := range notes {
		drawText(img, margin, y, n, textScale, colNote)
		y += rowH
	}
	barX := margin + labelW + 16
	barMax := chartW - barX - valueSpace
	for _, p := range panels {
		y += rowH / 2
		drawText(img, margin, y, p.Title, textScale, colText)
		y += rowH
		scale := func(v float64) float64 { return v }
		if p.Log {
			scale = func(v float64) float64 { return math.Log10(1 + max(v, 0)) }
		}
		top := 0.0
		for _, b := range p.Bars {
			top = max(top, scale(b.Value))
		}
		fill(img, barX-1, y, 1, rowH*len(p.Bars), colRule)
		for _, b := range p.Bars {
			drawText(img, margin+labelW-textWidth(b.Label, textScale), y+(rowH-glyphH*textScale)/2, b.Label, textScale, colText)
			w := 0
			if top > 0 && b.Value > 0 {
				w = max(1, int(scale(b.Value)/top*float64(barMax)))
			}
			fill(img, barX, y+(rowH-barH)/2, w, barH, b.Color)
			drawText(img, barX+w+8, y+(rowH-glyphH*textScale)/2, b.Text, textScale, colText)
			y += rowH
		}
		y += rowH / 2
	}
	return img
}

func fill(img *image.RGBA, x, y, w, h int, c color.Color) {
	draw.Draw(img, image.Rect(x, y, x+w, y+h), image.NewUniform(c), image.Point{}, draw.Src)
}

// WritePNG encodes img to path.
func WritePNG(path string, img image.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// modeColors are the colour of each sync setting's bars and its name in
// the legend.
var modeColors = map[string]struct {
	col  color.RGBA
	name string
}{
	SyncAlways:  {colAlways, "blue"},
	SyncDefault: {colDefault, "orange"},
	SyncR3:      {colR3, "green"},
}

func modeColor(sync string) color.RGBA {
	if c, ok := modeColors[sync]; ok {
		return c.col
	}
	return colLimit
}

// legend names the colour of every mode of the report, in the report's
// order, then the limit's; packed into lines that fit the chart.
func (r *Report) legend() []string {
	var items []string
	seen := map[string]bool{}
	for _, m := range r.Modes {
		c, ok := modeColors[m.Sync]
		if !ok || seen[m.Sync] {
			continue
		}
		seen[m.Sync] = true
		items = append(items, c.name+": "+m.Label())
	}
	items = append(items, "grey: bare go http client, same sink")
	var lines []string
	line := ""
	for _, it := range items {
		next := it
		if line != "" {
			next = line + " · " + it
		}
		if line != "" && textWidth(next, textScale) > chartW-2*margin {
			lines = append(lines, line)
			next = it
		}
		line = next
	}
	return append(lines, line)
}

// Chart draws a report: deliveries/s of every throughput scenario against
// the limit, latency percentiles, and CPU per 1,000 deliveries.
func (r *Report) Chart() *image.RGBA {
	var tput, lat, cpu Panel
	tput.Title = "DELIVERIES PER SECOND (PERCENT OF THE BARE-CLIENT LIMIT)"
	lat.Title = "PUBLISH -> RECEIPT LATENCY AT A FIXED RATE, MS (LOG SCALE)"
	lat.Log = true
	cpu.Title = "CPU SECONDS PER 1000 DELIVERIES, 1×1 NATS, BY PROCESS"
	for _, m := range r.Modes {
		col := modeColor(m.Sync)
		for _, s := range m.Scenarios {
			label := m.Sync + "  " + s.Name
			switch {
			case s.Rate > 0:
				for _, p := range []struct {
					name string
					v    float64
				}{{"p50", s.Latency.P50}, {"p90", s.Latency.P90}, {"p99", s.Latency.P99}, {"max", s.Latency.Max}} {
					lat.Bars = append(lat.Bars, Bar{Label: label + " " + p.name, Value: p.v, Text: fmt.Sprintf("%.1f ms", p.v), Color: col})
				}
			case s.Path == "bare":
				tput.Bars = append(tput.Bars, Bar{Label: label, Value: s.DeliveriesPerSec,
					Text: fmt.Sprintf("%.0f/s", s.DeliveriesPerSec), Color: colLimit})
			default:
				text := fmt.Sprintf("%.0f/s", s.DeliveriesPerSec)
				if s.OfLimit > 0 {
					text += fmt.Sprintf(" (%.0f%%)", 100*s.OfLimit)
				}
				tput.Bars = append(tput.Bars, Bar{Label: label, Value: s.DeliveriesPerSec, Text: text, Color: col})
			}
			if s.Name == "1×1 nats" {
				for _, p := range ProcOrder {
					if u, ok := s.CPU[p]; ok {
						cpu.Bars = append(cpu.Bars, Bar{Label: m.Sync + "  " + m.ProcLabel(p), Value: u.Per1000,
							Text: fmt.Sprintf("%.3f s", u.Per1000), Color: col})
					}
				}
			}
		}
	}
	var panels []Panel
	for _, p := range []Panel{tput, lat, cpu} {
		if len(p.Bars) > 0 {
			panels = append(panels, p)
		}
	}
	notes := []string{
		fmt.Sprintf("%s · %d cores · %s", r.Started.Format("2006-01-02 15:04"), r.Machine.Cores, r.Machine.CPUModel),
		fmt.Sprintf("%s · nats-server %s · payload %d B · concurrency %d",
			r.Versions.Go, r.Versions.Modules["github.com/nats-io/nats-server/v2"], r.Config.PayloadBytes, r.Config.Concurrency),
	}
	notes = append(notes, r.legend()...)
	return DrawChart("HOOKLINE END-TO-END BENCHMARK", notes, panels)
}

// WriteChart draws the report to dir/bench-<timestamp>.png.
func (r *Report) WriteChart(dir string) (string, error) {
	path := filepath.Join(dir, "bench-"+r.Started.Format("20060102-150405")+".png")
	return path, WritePNG(path, r.Chart())
}
