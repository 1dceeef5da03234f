package head

import (
	"fmt"
)

// Calibration sources: what the temperature and the conformal scores were
// fitted on.
const (
	CalibValidation = "validation"       // the final head's logits on the validation split
	CalibCV         = "cross-validation" // out-of-fold logits of k-fold cross-validation on the training rows
	CalibNone       = "none"             // no held-out predictions: temperature 1, no prediction sets
)

// Calibration records how a head's temperature was chosen and what it did
// on the rows it was fitted on. Before/after figures are measured on those
// same rows (for CalibCV: out-of-fold, so honest estimates for heads trained
// on fewer rows than the final one).
type Calibration struct {
	Source      string  `json:"source"` // CalibValidation, CalibCV or CalibNone
	Rows        int     `json:"rows"`   // held-out rows fitted on
	Folds       int     `json:"folds,omitempty"`
	Temperature float64 `json:"temperature"`        // FitTemperature's choice: mean confidence = smoothed accuracy
	Fitted      float64 `json:"fitted_temperature"` // plain NLL minimiser (FitTemperatureNLL), for comparison
	NLLBefore   float64 `json:"nll_before"`         // mean NLL at temperature 1
	NLLAfter    float64 `json:"nll_after"`
	NLLPlain    float64 `json:"nll_plain"` // mean NLL at the plain minimiser
	ECEBefore   float64 `json:"ece_before"`
	ECEAfter    float64 `json:"ece_after"`
	Accuracy    float64 `json:"accuracy"`         // of these rows' predictions
	Confidence  float64 `json:"confidence"`       // mean top-class probability at Temperature
	Reason      string  `json:"reason,omitempty"` // why CalibNone, or why cross-validation instead of validation
}

// Calibrate fits the temperature on held-out logits [len(labels)*k] (see
// FitTemperature) and measures NLL and ECE before and after. source is
// recorded as given.
func Calibrate(logits []float32, labels []int32, k int, source string) (Calibration, error) {
	c := Calibration{Source: source, Rows: len(labels), Temperature: 1}
	t, err := FitTemperature(logits, labels, k)
	if err != nil {
		return c, err
	}
	c.Fitted, _ = FitTemperatureNLL(logits, labels, k)
	c.Temperature = t
	c.NLLBefore, c.Accuracy = nllAcc(logits, labels, k, 1)
	c.NLLAfter, _ = nllAcc(logits, labels, k, 1/t)
	c.NLLPlain, _ = nllAcc(logits, labels, k, 1/c.Fitted)
	c.ECEBefore = eceOf(logits, labels, k, 1)
	c.ECEAfter = eceOf(logits, labels, k, 1/t)
	c.Confidence = meanConfidence(logits, k, 1/t)
	return c, nil
}

// Describe is one line for a training report, e.g.
// "temperature 1.84 fitted on 36 out-of-fold predictions (5-fold cross-validation): log loss 0.912 -> 0.701, ECE 0.143 -> 0.052".
func (c Calibration) Describe() string {
	switch c.Source {
	case CalibNone, "":
		return fmt.Sprintf("temperature 1 (not calibrated: %s)", c.Reason)
	}
	what := fmt.Sprintf("%d validation predictions", c.Rows)
	if c.Source == CalibCV {
		what = fmt.Sprintf("%d out-of-fold predictions (%d-fold cross-validation)", c.Rows, c.Folds)
	}
	s := fmt.Sprintf("temperature %.3f fitted on %s: log loss %.4f -> %.4f, ECE %.4f -> %.4f",
		c.Temperature, what, c.NLLBefore, c.NLLAfter, c.ECEBefore, c.ECEAfter)
	if c.Fitted < 0.5*c.Temperature {
		s += fmt.Sprintf(" (temperature scaling by log loss would pick %.3f, claiming more confidence than %.0f%% right on %d held-out rows supports)",
			c.Fitted, 100*c.Accuracy, c.Rows)
	}
	return s
}
