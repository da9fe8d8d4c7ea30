package e2e

import "errors"

var errNotYet = errors.New("not yet")
