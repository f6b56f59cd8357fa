// Package argohealth runs a Function's Argo CD health script
// (charts/lambdapod/argocd/health.lua) the way Argo CD does, so that tests
// can tell what Argo CD shows for a Function. Only tests import it.
package argohealth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ScriptPath is the health script, from the repository's root.
const ScriptPath = "charts/lambdapod/argocd/health.lua"

// Script reads the health script of the repository at root.
func Script(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, ScriptPath))
	return string(b), err
}

// Health is what Argo CD makes of a health script's answer.
type Health struct{ Status, Message string }

func (h Health) String() string { return fmt.Sprintf("%s %q", h.Status, h.Message) }

// Run runs a health script the way Argo CD's util/lua does: the object, as
// the cluster cache holds it (unstructured, integers as int64), becomes the
// global obj; the script's return value is a table with status and
// message. openLibs false is Argo CD's mode for scripts from argocd-cm
// (only the base, table and package libraries, no string library); true is
// its mode for built-in scripts. A status Argo CD does not know (it reads
// it as Unknown) is an error.
func Run(script string, obj *unstructured.Unstructured, openLibs bool) (Health, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			return Health{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, obj.Object))
	if err := L.DoString(script); err != nil {
		return Health{}, fmt.Errorf("health script on %s: %w", obj.GetName(), err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("health script on %s returned %s, not a table", obj.GetName(), L.Get(-1).Type())
	}
	h := Health{Status: lua.LVAsString(ret.RawGetString("status")), Message: lua.LVAsString(ret.RawGetString("message"))}
	switch h.Status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		return h, nil
	}
	return h, fmt.Errorf("health script on %s returned status %q, which Argo CD reads as Unknown", obj.GetName(), h.Status)
}

// Check runs the script in both of Argo CD's modes (see Run), which must
// give the same answer: the chart's script is installed through argocd-cm,
// and may one day be built in.
func Check(script string, obj *unstructured.Unstructured) (Health, error) {
	restricted, err := Run(script, obj, false)
	if err != nil {
		return Health{}, err
	}
	open, err := Run(script, obj, true)
	if err != nil {
		return Health{}, err
	}
	if open != restricted {
		return Health{}, fmt.Errorf("health script on %s: %v with argocd-cm's libraries, %v with all of Lua's", obj.GetName(), restricted, open)
	}
	return restricted, nil
}

// toLua converts a decoded JSON value to Lua values as Argo CD does:
// numbers (float64, int64, json.Number) to numbers or strings, maps to
// tables with string keys, lists to array tables.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case []any:
		t := L.CreateTable(len(v), 0)
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(v))
		for k, e := range v {
			t.RawSetH(lua.LString(k), toLua(L, e))
		}
		return t
	}
	return lua.LNil
}
