package main

import (
	"fmt"
	"image/color"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/nblpipe/nblpipe/internal/scenario"
)

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
}

// writeSVG draws the pipeline results as three charts in one SVG file:
// throughput by scenario and burst size, scaling by workers, and latency
// percentiles. size picks the frame size charted.
func writeSVG(path string, results []Result, o options) error {
	size := o.sizes[0]
	minWorkers, maxWorkers := o.workers[0], o.workers[0]
	for _, w := range o.workers {
		minWorkers, maxWorkers = min(minWorkers, w), max(maxWorkers, w)
	}
	burst := o.bursts[len(o.bursts)-1]
	for _, b := range o.bursts {
		if b == 32 {
			burst = 32
		}
	}
	find := func(k scenario.Kind, b, w int) *Result {
		for i := range results {
			r := &results[i]
			if r.Group == "pipeline" && r.Scenario == string(k) && r.FrameSize == size && r.Burst == b && r.Workers == w {
				return r
			}
		}
		return nil
	}
	names := make([]string, len(scenario.Kinds))
	for i, k := range scenario.Kinds {
		names[i] = string(k)
	}

	bars := func(title, ylabel string, series []string, value func(series, kind int) float64) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = title
		p.Y.Label.Text = ylabel
		w := vg.Points(14)
		top := 0.0
		for si, s := range series {
			vals := make(plotter.Values, len(scenario.Kinds))
			for ki := range scenario.Kinds {
				vals[ki] = value(si, ki)
				top = max(top, vals[ki])
			}
			b, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return nil, err
			}
			b.Color = palette[si%len(palette)]
			b.LineStyle.Width = 0
			b.Offset = vg.Length(si-len(series)/2) * w
			p.Add(b)
			p.Legend.Add(s, b)
		}
		p.Legend.Top = true
		p.Y.Min = 0
		p.Y.Max = max(top, 1e-9) * (1.2 + 0.12*float64(len(series))) // room for the legend above the bars
		p.NominalX(names...)
		return p, nil
	}

	var series []string
	for _, b := range o.bursts {
		series = append(series, fmt.Sprintf("burst %d", b))
	}
	p1, err := bars(fmt.Sprintf("Throughput by scenario and burst (%d-byte frames, %d worker)", size, minWorkers), "Mpps", series,
		func(si, ki int) float64 {
			if r := find(scenario.Kinds[ki], o.bursts[si], minWorkers); r != nil {
				return r.Mpps
			}
			return 0
		})
	if err != nil {
		return err
	}
	series = nil
	for _, w := range o.workers {
		series = append(series, fmt.Sprintf("%d workers", w))
	}
	p2, err := bars(fmt.Sprintf("Scaling by workers (%d-byte frames, burst %d)", size, burst), "Mpps", series,
		func(si, ki int) float64 {
			if r := find(scenario.Kinds[ki], burst, o.workers[si]); r != nil {
				return r.Mpps
			}
			return 0
		})
	if err != nil {
		return err
	}
	pct := []string{"p50", "p99", "p99.9"}
	p3, err := bars(fmt.Sprintf("Latency, receive to transmit (%d-byte frames, burst %d, %d worker)", size, burst, minWorkers), "µs", pct,
		func(si, ki int) float64 {
			r := find(scenario.Kinds[ki], burst, minWorkers)
			if r == nil {
				return 0
			}
			v := []*float64{r.P50Ns, r.P99Ns, r.P999Ns}[si]
			if v == nil {
				return 0
			}
			return *v / 1e3
		})
	if err != nil {
		return err
	}
	_ = maxWorkers

	const w, h = 8 * vg.Inch, 4 * vg.Inch
	c := vgsvg.New(w, 3*h)
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadY: vg.Points(12), PadX: vg.Points(6)}
	plots := [][]*plot.Plot{{p1}, {p2}, {p3}}
	canvases := plot.Align(plots, tiles, dc)
	for i, row := range plots {
		row[0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// svgPath checks the -svg argument.
func svgPath(p string) error {
	if p != "" && !strings.HasSuffix(strings.ToLower(p), ".svg") {
		return fmt.Errorf("-svg %q: the file name should end in .svg", p)
	}
	return nil
}
