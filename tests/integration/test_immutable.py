"""Immutable tags (issue 11): rules through the official SDK (SWR enterprise
edition), then real skopeo pushes, /v2/ deletes and SWR tag operations
refused with the rule named; signature tags of the cosign schema stay
writable; rules disabled or deleted stop protecting; invalid rules get SWR
error JSON."""

import json
import time

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    CreateImmutableRuleBody,
    CreateImmutableRuleRequest,
    CreateNamespaceRequest,
    CreateNamespaceRequestBody,
    CreateRepoTagRequest,
    CreateRepoTagRequestBody,
    DeleteImmutableRuleRequest,
    DeleteRepoRequest,
    DeleteRepoTagRequest,
    ListImmutableRulesRequest,
    RuleSelector,
    SwrClient,
    UpdateImmutableRuleBody,
    UpdateImmutableRuleRequest,
)

from conftest import Registry, image, put_manifest, skopeo_push, tenant_client

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("immutable") / "data").start()
    client, project = tenant_client(reg, "acme", "acme-pw", ["imm"])
    yield reg, client, project, f"http://acme:acme-pw@{reg.host}"
    reg.stop()


def rule_body(repo="app*", tag="v*", tag_decoration="matches", extras=None, disabled=None, cls=CreateImmutableRuleBody):
    return cls(disabled=disabled,
               tag_selectors=[RuleSelector(kind="doublestar", decoration=tag_decoration, pattern=tag, extras=extras)],
               scope_selectors={"repository": [RuleSelector(kind="doublestar", decoration="repoMatches", pattern=repo)]})


def create(client, project, body, ns="imm"):
    return client.create_immutable_rule(CreateImmutableRuleRequest(
        instance_id=project, namespace_name=ns, body=body)).id


def digest_of(url, repo, tag):
    r = requests.head(f"{url}/v2/{repo}/manifests/{tag}", headers=ACCEPT)
    assert r.status_code == 200, r.text
    return r.headers["Docker-Content-Digest"]


def test_an_immutable_tag_cannot_be_moved_or_deleted(env, tmp_path):
    reg, client, project, url = env
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    p = skopeo_push(reg.host, "acme:acme-pw", "imm/app:v1", tmp_path / "a", content=b"first")
    assert p.returncode == 0, p.stderr
    v1 = digest_of(url, "imm/app", "v1")
    rid = create(client, project, rule_body())
    # skopeo pushing other content to v1 is refused, and says which rule.
    p = skopeo_push(reg.host, "acme:acme-pw", "imm/app:v1", tmp_path / "b", content=b"second")
    assert p.returncode != 0 and "immutable" in p.stderr and f"rule {rid}" in p.stderr, p.stderr
    assert digest_of(url, "imm/app", "v1") == v1
    # The same image again is fine; new tags are fine, and protected from then on.
    p = skopeo_push(reg.host, "acme:acme-pw", "imm/app:v1", tmp_path / "a", content=b"first")
    assert p.returncode == 0, p.stderr
    _, other = image(url, "imm/app", tag="v2", layers=[b"v2"])
    r, _, _ = put_manifest(url, "imm/app", "v2", image(url, "imm/app", tag="scratch", layers=[b"v2b"])[0])
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text
    assert f"rule {rid}" in r.json()["errors"][0]["message"]
    # Tags the rule does not select move freely.
    image(url, "imm/app", tag="latest", layers=[b"l1"])
    image(url, "imm/app", tag="latest", layers=[b"l2"])
    # Deletes through /v2/: the tag, or the manifest it points at.
    for ref in ("v1", v1):
        r = requests.delete(f"{url}/v2/imm/app/manifests/{ref}")
        assert r.status_code == 403 and "immutable" in r.json()["errors"][0]["message"], r.text
    # And through the SWR API: delete the tag, copy another tag over it, delete the repository.
    for call in (
        lambda: client.delete_repo_tag(DeleteRepoTagRequest(namespace="imm", repository="app", tag="v1")),
        lambda: client.create_repo_tag(CreateRepoTagRequest(namespace="imm", repository="app", body=CreateRepoTagRequestBody(
            source_tag="latest", destination_tag="v1", override=True))),
        lambda: client.delete_repo(DeleteRepoRequest(namespace="imm", repository="app")),
    ):
        with pytest.raises(ClientRequestException) as e:
            call()
        assert e.value.status_code == 403 and f"rule {rid}" in e.value.error_msg, e.value
    assert digest_of(url, "imm/app", "v1") == v1
    # A repository named as its organization is protected as well.
    root = create(client, project, rule_body(repo="imm", tag="root-*"))
    image(url, "imm", tag="root-1", layers=[b"root one"])
    r, _, _ = put_manifest(url, "imm", "root-1", image(url, "imm", tag="root-x", layers=[b"root two"])[0])
    assert r.status_code == 403 and f"rule {root}" in r.text, r.text
    assert requests.delete(f"{url}/v2/imm/manifests/root-1").status_code == 403
    client.delete_immutable_rule(DeleteImmutableRuleRequest(instance_id=project, namespace_name="imm", immutable_rule_id=root))
    # Another repository of the organization is not selected.
    image(url, "imm/db", tag="v1", layers=[b"db1"])
    image(url, "imm/db", tag="v1", layers=[b"db2"])
    assert requests.delete(f"{url}/v2/imm/db/manifests/v1").status_code == 202
    # Disabled, the rule protects nothing; enabled again, it does.
    client.update_immutable_rule(UpdateImmutableRuleRequest(
        instance_id=project, namespace_name="imm", immutable_rule_id=rid,
        body=rule_body(disabled=True, cls=UpdateImmutableRuleBody)))
    image(url, "imm/app", tag="v2", layers=[b"v2 again"])
    # An update that leaves `disabled` out keeps it as it was.
    client.update_immutable_rule(UpdateImmutableRuleRequest(
        instance_id=project, namespace_name="imm", immutable_rule_id=rid, body=rule_body(cls=UpdateImmutableRuleBody)))
    image(url, "imm/app", tag="v2", layers=[b"v2 once more"])
    client.update_immutable_rule(UpdateImmutableRuleRequest(
        instance_id=project, namespace_name="imm", immutable_rule_id=rid,
        body=rule_body(disabled=False, cls=UpdateImmutableRuleBody)))
    r, _, _ = put_manifest(url, "imm/app", "v2", image(url, "imm/app", tag="scratch2", layers=[b"v2c"])[0])
    assert r.status_code == 403
    client.delete_immutable_rule(DeleteImmutableRuleRequest(instance_id=project, namespace_name="imm", immutable_rule_id=rid))
    assert requests.delete(f"{url}/v2/imm/app/manifests/v1").status_code == 202


def test_signature_tags_stay_writable_unless_a_rule_says_otherwise(env):
    reg, client, project, url = env
    _, signed = image(url, "imm/signed", tag="v1", layers=[b"signed"])
    sig = f"sha256-{signed.split(':')[1]}.sig"
    rid = create(client, project, rule_body(repo="signed", tag="**"))
    # Signing twice rewrites the .sig tag (what cosign does): allowed.
    image(url, "imm/signed", tag=sig, layers=[b"signature one"])
    image(url, "imm/signed", tag=sig, layers=[b"signature two"])
    assert requests.delete(f"{url}/v2/imm/signed/manifests/{sig}").status_code == 202
    # A rule may opt signature tags in.
    strict = create(client, project, rule_body(repo="signed", tag="sha256-*", extras="signatures"))
    image(url, "imm/signed", tag=sig, layers=[b"signature three"])
    r, _, _ = put_manifest(url, "imm/signed", sig, image(url, "imm/signed", tag="s4", layers=[b"signature four"])[0])
    assert r.status_code == 403 and f"rule {strict}" in r.text
    for i in (rid, strict):
        client.delete_immutable_rule(DeleteImmutableRuleRequest(instance_id=project, namespace_name="imm", immutable_rule_id=i))


def test_rules_are_listed_and_checked(env):
    reg, client, project, url = env
    client.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="imm2")))
    a = create(client, project, rule_body(repo="x"), ns="imm")
    b = create(client, project, rule_body(repo="y", tag_decoration="excludes"), ns="imm2")
    listed = client.list_immutable_rules(ListImmutableRulesRequest(instance_id=project))
    ids = [r.id for r in listed.immutable_rules]
    assert a in ids and b in ids and listed.total == len(ids)
    one = [r for r in listed.immutable_rules if r.id == b][0]
    assert one.namespace_name == "imm2" and one.action == "immutable" and one.template == "immutable_template"
    assert one.tag_selectors[0].decoration == "excludes" and one.disabled is False
    ns_id = one.namespace_id
    only = client.list_immutable_rules(ListImmutableRulesRequest(instance_id=project, namespace_id=ns_id))
    assert [r.id for r in only.immutable_rules] == [b]
    paged = client.list_immutable_rules(ListImmutableRulesRequest(instance_id=project, offset=0, limit=1))
    assert len(paged.immutable_rules) == 1 and paged.total == len(ids)
    bad = [
        CreateImmutableRuleBody(tag_selectors=[], scope_selectors={"repository": [RuleSelector(
            kind="doublestar", decoration="repoMatches", pattern="x")]}),
        rule_body(tag="{unclosed"),
        rule_body(tag_decoration="repoMatches"),
        CreateImmutableRuleBody(tag_selectors=[RuleSelector(kind="doublestar", decoration="matches", pattern="v")],
                                scope_selectors={"project": [RuleSelector(kind="doublestar", decoration="repoMatches",
                                                                          pattern="x")]}),
        CreateImmutableRuleBody(action="retain", tag_selectors=[RuleSelector(kind="doublestar", decoration="matches", pattern="v")],
                                scope_selectors={"repository": [RuleSelector(kind="doublestar", decoration="repoMatches",
                                                                             pattern="x")]}),
    ]
    for body in bad:
        with pytest.raises(ClientRequestException) as e:
            create(client, project, body)
        assert e.value.status_code == 400 and e.value.error_code == "SVCSTG.SWR.4000001", e.value
    after = client.list_immutable_rules(ListImmutableRulesRequest(instance_id=project)).total
    assert after == len(ids), "refused rules write nothing"
    with pytest.raises(ClientRequestException) as e:
        client.delete_immutable_rule(DeleteImmutableRuleRequest(instance_id=project, namespace_name="imm", immutable_rule_id=999999))
    assert e.value.status_code == 404
    # Who may: not a read-only user (403), not another tenant (404).
    reg.iam("user-create", "acme", "viewer", "--password", "viewer-pw", "--policy", "SWR ReadOnlyAccess")
    viewer = reg.iam("key-create", "acme", "viewer")
    vc = SwrClient.new_builder().with_credentials(BasicCredentials(viewer["ak"], viewer["sk"], project)) \
        .with_endpoints([reg.anon_url]).build()
    with pytest.raises(ClientRequestException) as e:
        create(vc, project, rule_body(repo="z"))
    assert e.value.status_code == 403
    assert not (vc.list_immutable_rules(ListImmutableRulesRequest(instance_id=project)).immutable_rules or [])
    rc, rival_project = tenant_client(reg, "rival", "rival-pw")
    with pytest.raises(ClientRequestException) as e:
        create(rc, rival_project, rule_body(repo="z"), ns="imm")
    assert e.value.status_code == 404
    for ns, i in (("imm", a), ("imm2", b)):
        client.delete_immutable_rule(DeleteImmutableRuleRequest(instance_id=project, namespace_name=ns, immutable_rule_id=i))


def test_an_organizations_rules_go_with_it(env):
    reg, client, project, url = env
    from huaweicloudsdkswr.v2 import DeleteNamespacesRequest
    client.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="fleeting")))
    create(client, project, rule_body(repo="**", tag="**"), ns="fleeting")
    client.delete_namespaces(DeleteNamespacesRequest(namespace="fleeting"))
    time.sleep(1.1)  # the same signed body again within a second would be a replay
    client.create_namespace(CreateNamespaceRequest(body=CreateNamespaceRequestBody(namespace="fleeting")))
    image(url, "fleeting/app", tag="v1", layers=[b"one"])
    image(url, "fleeting/app", tag="v1", layers=[b"two"])   # no rule left to refuse it
    listed = client.list_immutable_rules(ListImmutableRulesRequest(instance_id=project)).immutable_rules or []
    assert [r for r in listed if r.namespace_name == "fleeting"] == []


def test_blobs_and_children_of_an_immutable_image_cannot_be_deleted(env):
    reg, client, project, url = env
    rid = create(client, project, rule_body(repo="kids", tag="release-*"))
    m, child = image(url, "imm/kids", layers=[b"kid layer"])
    idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": [{"mediaType": m["mediaType"], "digest": child, "size": len(json.dumps(m).encode()),
                          "platform": {"architecture": "amd64", "os": "linux"}}]}
    r, _, _ = put_manifest(url, "imm/kids", "release-1", idx)
    assert r.status_code == 201, r.text
    layer = m["layers"][0]["digest"]
    # The layer (used through the index) and the child manifest stay.
    for path in (f"blobs/{layer}", f"manifests/{child}"):
        r = requests.delete(f"{url}/v2/imm/kids/{path}")
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text
        assert f"rule {rid}" in r.json()["errors"][0]["message"] and "release-1" in r.text
    assert requests.get(f"{url}/v2/imm/kids/blobs/{layer}").status_code == 200
    # Blobs of images without an immutable tag go as before.
    m2, d2 = image(url, "imm/kids", tag="dev", layers=[b"dev layer"])
    assert requests.delete(f"{url}/v2/imm/kids/blobs/{m2['layers'][0]['digest']}").status_code == 202
    client.delete_immutable_rule(DeleteImmutableRuleRequest(instance_id=project, namespace_name="imm", immutable_rule_id=rid))
    assert requests.delete(f"{url}/v2/imm/kids/blobs/{layer}").status_code == 202
