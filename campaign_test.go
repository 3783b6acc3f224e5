package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestCampaignErrorsNameTheField(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 3))
	now := time.Now()
	good := campaignJSON(now, now.Add(time.Hour), 5, `{}`)
	cases := map[string]struct{ body, want string }{
		"bad tag":        {strings.Replace(good, "<_&getCity_>", "<_&getCty_>", 1), "text.body: line 1"},
		"bad operator":   {campaignJSON(now, now.Add(time.Hour), 5, `{"all": [{"field": "country", "op": "~", "value": "US"}]}`), "selection"},
		"bad field":      {campaignJSON(now, now.Add(time.Hour), 5, `{"field": "password", "op": "=", "value": "x"}`), "selection"},
		"stop first":     {campaignJSON(now, now.Add(-time.Hour), 5, `{}`), "stop: must be after start"},
		"zero count":     {campaignJSON(now, now.Add(time.Hour), 0, `{}`), "client_count"},
		"unknown field":  {strings.Replace(good, `"name"`, `"nmae"`, 1), "nmae"},
		"wrong type":     {strings.Replace(good, `"client_count": 5`, `"client_count": "five"`, 1), "client_count"},
		"hostile sql":    {campaignJSON(now, now.Add(time.Hour), 5, `{"sql": "id IN (SELECT key FROM jobs)"}`), "selection"},
		"not json":       {`{"issuer": `, "JSON"},
		"bad rule":       {strings.Replace(good, `"client_count": 5`, `"client_count": 5, "rules": [{"type": "reply", "points": 10}, {"type": "click", "points": 0}]`, 1), "rules[1].points"},
		"bad rule type":  {strings.Replace(good, `"client_count": 5`, `"client_count": 5, "rules": [{"type": "fax", "points": 10}]`, 1), "rules[0].type"},
		"bad period":     {strings.Replace(good, `"client_count": 5`, `"client_count": 5, "rules": [{"type": "reply", "points": 1, "frequency": "period", "period": "daily"}]`, 1), "rules[0].period"},
		"foreign rule":   {strings.Replace(good, `"client_count": 5`, `"client_count": 5, "rule_ids": [42]`, 1), "rule_ids[0]"},
		"no such server": {strings.Replace(good, `"client_count": 5`, `"client_count": 5, "mail_server": 9`, 1), "mail_server: there is no mail server 9"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), []string{"campaign", "create", writeCampaign(t, c.body)}, e.get, &out)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}
