package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// Review: nextMapVersion is max(version)+1 read before the load writes, with
// nothing serialising loads: two loads at once (two admin calls, or a
// teammap load beside serve's admin API) get the same version.
func TestReviewConcurrentLoadsShareAVersion(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	versions := make([]uint64, 8)
	for i := range versions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := st.PutURLMappings(ctx, []store.URLMapping{{Old: fmt.Sprintf("https://old/%d", i), New: fmt.Sprintf("https://nim/%d", i)}})
			if err != nil {
				t.Error(err)
			}
			versions[i] = v
		}()
	}
	wg.Wait()
	seen := map[uint64]int{}
	for _, v := range versions {
		seen[v]++
	}
	for v, n := range seen {
		if n > 1 {
			t.Errorf("%d concurrent loads committed the same map version %d (versions: %v)", n, v, versions)
		}
	}
}

// Review: one load may map a group twice, to two tids; it is accepted and
// the tid rendered is whichever argMax meets first among equal versions.
func TestReviewOneLoadMappingAGroupToTwoTidsIsAccepted(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	v, err := st.PutTeamMappings(ctx, []store.TeamMapping{
		{Source: "tencent", GroupID: "@TGS#D", TID: 1},
		{Source: "tencent", GroupID: "@TGS#D", TID: 2},
	})
	if err == nil {
		got, _ := st.TeamMappings(ctx, v, []string{"@TGS#D"})
		t.Fatalf("a load mapping @TGS#D to tids 1 and 2 was accepted as version %d; rendering uses tid %d", v, got[store.GroupKey("tencent", "@TGS#D")])
	}
}

// Review check (expected to pass): a migration interrupted after its ALTERs
// but before its record is applied again without error on this server.
func TestReviewMigrationsReapply(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	if err := st.Conn().Exec(ctx, "DROP TABLE schema_migrations"); err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("re-applying every migration: %v", err)
	}
}
