package store

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pointpost/store/pgtest"
)

// The conformance suite: the store's tests, unchanged, on both engines. openTest opens
// SQLite, or PostgreSQL when pgtest.EnvEngine says so; TestConformancePostgres runs this test
// binary again with it, for the tests of conformanceTests.

// conformanceTests are the tests that run on PostgreSQL too, unchanged: every test that opens
// its store with openTest but those of sqliteTests. Tests whose SQL differs say so where it
// does: raw expressions in each dialect (TestCheckSelectionGoodExpressions), query plans by
// each engine's EXPLAIN (queryPlan). TestConformanceListed keeps the two lists whole.
var conformanceTests = []string{
	"TestACMECacheOutOfReachIsNoMiss",
	"TestACMECacheRefusesBadInput",
	"TestACMECacheSharedByTwoStores",
	"TestAPIConsumerIDs",
	"TestAPIConsumerVisibleOnceTheIssuerMailedHer",
	"TestAPIJobsPages",
	"TestAcknowledgeAfterTheJobStops",
	"TestAcknowledgeBatchMixingDuplicates",
	"TestAcknowledgeBatchWithAFailure",
	"TestAcknowledgeBudgets",
	"TestAcknowledgeCloseAppliesQueued",
	"TestAcknowledgeContextAndClose",
	"TestAcknowledgeEarnsOnlyUnderTheChannelsRules",
	"TestAcknowledgeFirstAckAccrues",
	"TestAcknowledgeGroupCommit",
	"TestAcknowledgeParallelDuplicatesAwardOnce",
	"TestAcknowledgePeriodRule",
	"TestAcknowledgeReplaysAwardOnce",
	"TestAcknowledgeRuleDates",
	"TestAcknowledgeSameReplyAgainInALaterPeriod",
	"TestAcknowledgeTimesRule",
	"TestAcknowledgeUnknownDelivery",
	"TestAcknowledgeWithoutARuleOfTheChannel",
	"TestCheckSelectionCompiled",
	"TestCheckSelectionGoodExpressions",
	"TestCheckSelectionRefusesHostileExpressions",
	"TestCheckSelectionTimeLimit",
	"TestCompileSelectionReadsTheIssuersAttributes",
	"TestConsumerFieldsAreColumns",
	"TestConsumerStatuses",
	"TestCorrect",
	"TestCreateDeviceKeepsAFewPerUser",
	"TestCreateUserRefusesATakenAddressInAnyCase",
	"TestDeviceCookieBudgetAndBinding",
	"TestEnrollConsumersKeepsTheProfileAndNamespacesAttributes",
	"TestEnrollmentConfirmCreatesConsumerOnce",
	"TestEnrollmentErrors",
	"TestEnrollmentOfExistingConsumerKeepsStatus",
	"TestExportDeliveriesWalksEveryDelivery",
	"TestFirstOperatorSetup",
	"TestImportConsumerFile",
	"TestImportConsumersBadRows",
	"TestImportConsumersBrokenQuote",
	"TestImportConsumersCancelled",
	"TestImportConsumersHeaderError",
	"TestImportConsumersManyBatches",
	"TestImportConsumersReadError",
	"TestImportConsumersReimport",
	"TestImportConsumersTwoStoresAtOnce",
	"TestImportDemoConsumers",
	"TestInboundPageFiltersAndPages",
	"TestInboundPageListsAcknowledgedReplies",
	"TestIssuersAndSettings",
	"TestJobCountsByGroupsByConsumerField",
	"TestJobPointsChannelsAndRulePoints",
	"TestJobTimelineCountsSendsAndAcknowledgementsByBucket",
	"TestLeaseRecipientsRefusesNoOwnerOrNoTime",
	"TestLedgerIsAppendOnly",
	"TestLinkJobRules",
	"TestLockProcessFreedWhenTheHolderIsKilled",
	"TestLockProcessHoldsTheNameUntilRelease",
	"TestWatchTakesALostNameBack",
	"TestOutboxSearch",
	"TestPasswordChangeAndDisableEndSessions",
	"TestPointsBoundsInTheDatabase",
	"TestPointsBoundsRefusedWithTheField",
	"TestPolicyRefusalsDoNotSuppress",
	"TestRecipientsAndCountsSeeTheJobIssuersAttributes",
	"TestRecordBounceAffectsOnlyTheTokensConsumer",
	"TestRecordBounceComplaintSuppresses",
	"TestRecordBounceHardRejectsAndSuppressesOnce",
	"TestRecordBounceSoftLimitAndAcknowledgementReset",
	"TestRecordBounceSparesAcknowledgedDelivery",
	"TestRecordBounceWithoutToken",
	"TestRecordInbound",
	"TestRecordInboundOnceByKey",
	"TestRecordOutcomesCountsRefusalsAsBounces",
	"TestRedeemRaceNeverOversells",
	"TestRedeemRaceNeverOverspends",
	"TestRedemptionCodeWorksOnceForItsConsumerUntilItExpires",
	"TestReportQueriesUseIndexes",
	"TestRouteSendsCountedWithOutcomes",
	"TestRouteWarmupSaved",
	"TestRoutes",
	"TestRuleSpentFollowsAccruals",
	"TestRulesCreateReadUpdateRetire",
	"TestRulesErrors",
	"TestSampleConsumerAndBudget",
	"TestScheduleJobRecordsTheBudgetOverride",
	"TestSearchConsumers",
	"TestSearchConsumersEmailPrefixUsesTheIndex",
	"TestSegmentsBelongToTheirIssuer",
	"TestSelectionFromGo",
	"TestSelectionMatches",
	"TestSelectionsNeverHoldConsumerReads",
	"TestSetConsumerStatus",
	"TestSetStatusOfConsumersMatching",
	"TestSettleConcurrentPostsEachAccrualOnce",
	"TestSettlerGoesOnPastHeldAccruals",
	"TestSettlerPostsInBatchesAndOnInterval",
	"TestStatusGenerationMovesWithEveryStatusChange",
	"TestTimelineExplainsPoints",
	"TestUpdateConsumerWritesEveryField",
	"TestUpdateDraftJobRefusesAnotherIssuersRule",
	"TestUpdateDraftJobRewritesMessagesAndRules",
	"TestUpsertConsumers",
	"TestUpsertConsumersBadRowNamed",
	"TestUpsertConsumersSameAddressAgain",
	"TestUserLinkSetsAPasswordOnce",
}

// sqliteTests open their store with openTest but test what is SQLite's alone; each says why,
// and where PostgreSQL's counterpart is.
var sqliteTests = map[string]string{
	"TestWithGuardRemovesAuthorizer": "the guard's authorizer; raw SQL on PostgreSQL runs as a role that reads consumers only, " +
		"READ ONLY (TestCheckSelectionRefusesHostileExpressions)",
	"TestWithGuardRefusesStatements": "the guard's authorizer; raw SQL on PostgreSQL runs as a role that reads consumers " +
		"only, READ ONLY (TestCheckSelectionRefusesHostileExpressions)",
	"TestCheckSelectionLengthCap": "SQLite's length limit; PostgreSQL's raw SQL is bounded by statement_timeout " +
		"(TestCheckSelectionTimeLimit)",
	"TestDatabaseLockedIsUnavailable":           "SQLite's write lock",
	"TestAcknowledgePoisonFailsAlone":           "drops a SQLite trigger to make a row a PostgreSQL database cannot hold",
	"TestSettleHoldsWhatItCannotPost":           "drops a SQLite trigger to make a row a PostgreSQL database cannot hold",
	"TestAcknowledgeCommitFailureFailsTheBatch": "adds a SQLite trigger that fails the commit",
	"TestStructuredSelectionStoppedAtTheLimit": "its 1 ms limit runs out while PostgreSQL hands over a connection, " +
		"before the selection starts (TestCheckSelectionTimeLimit)",
	"TestImportMillion": "runs only with POINTPOST_BIG",
}

// TestConformanceListed: every test that reaches openTest (or testDatabase), directly or through the tests
// own functions, is in conformanceTests or in sqliteTests, and none is in both.
func TestConformanceListed(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]map[string]bool{} // function → the functions it calls by name
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			called := map[string]bool{}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					switch f := c.Fun.(type) {
					case *ast.Ident:
						called[f.Name] = true
					case *ast.SelectorExpr:
						called[f.Sel.Name] = true
					}
				}
				return true
			})
			calls[fn.Name.Name] = called
		}
	}
	reaches := map[string]bool{"openTest": true, "testDatabase": true}
	for grew := true; grew; {
		grew = false
		for fn, called := range calls {
			for c := range called {
				if !reaches[fn] && reaches[c] {
					reaches[fn], grew = true, true
				}
			}
		}
	}
	listed := map[string]bool{}
	for _, name := range conformanceTests {
		listed[name] = true
		if _, ok := sqliteTests[name]; ok {
			t.Errorf("%s is in conformanceTests and in sqliteTests", name)
		}
		if !reaches[name] {
			t.Errorf("%s is in conformanceTests but does not open a store with openTest", name)
		}
	}
	for fn := range reaches {
		if _, sqlite := sqliteTests[fn]; strings.HasPrefix(fn, "Test") && !listed[fn] && !sqlite {
			t.Errorf("%s opens a store with openTest: add it to conformanceTests, or to sqliteTests saying why", fn)
		}
	}
}

var pgServer *pgtest.Server

func TestMain(m *testing.M) {
	if pgtest.OnPostgres() {
		skipSQLiteTests()
	}
	os.Exit(pgtest.Main(m, &pgServer))
}

// skipSQLiteTests leaves sqliteTests out of a run on PostgreSQL (-test.skip), which they
// would fail by their nature: POINTPOST_TEST_ENGINE=postgres go test ./store/ runs the rest.
func skipSQLiteTests() {
	flag.Parse()
	names := make([]string, 0, len(sqliteTests))
	for name := range sqliteTests {
		names = append(names, name)
	}
	slices.Sort(names)
	skip := "^(" + strings.Join(names, "|") + ")$"
	if given := flag.Lookup("test.skip").Value.String(); given != "" {
		if strings.Contains(given, "/") {
			// -skip splits at slashes, level by level: the two cannot be joined into one.
			fmt.Fprintf(os.Stderr, "on PostgreSQL -skip %q names subtests; name top-level tests only, or add %s\n", given, skip)
			os.Exit(2)
		}
		skip = given + "|" + skip
	}
	if err := flag.Set("test.skip", skip); err != nil {
		panic(err)
	}
	fmt.Fprintf(os.Stderr, "on PostgreSQL: %d tests of SQLite's alone are skipped (sqliteTests)\n", len(names))
}

// testDatabase names a fresh database for t on the engine the tests run on.
func testDatabase(t testing.TB) string {
	t.Helper()
	return pgtest.Database(t, pgServer, filepath.Join(t.TempDir(), "pointpost.db"))
}

// TestConformancePostgres runs conformanceTests on PostgreSQL, in this test binary run again
// with pgtest.EnvEngine set, and checks that each of them ran and passed there.
func TestConformancePostgres(t *testing.T) {
	pgtest.Need(t, pgServer).RunAgain(t, conformanceTests)
}
