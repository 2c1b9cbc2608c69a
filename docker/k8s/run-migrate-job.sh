#!/usr/bin/env bash
# Run one deploy phase's migrations as a Kubernetes Job and wait for its outcome.
#
#   docker/k8s/run-migrate-job.sh pre-deploy ghcr.io/acme/site:1f2e3d4 1f2e3d4
#   kubectl rollout ...
#   docker/k8s/run-migrate-job.sh post-deploy ghcr.io/acme/site:1f2e3d4 1f2e3d4
#
# Renders the overlay overlays/<phase> beside this script with the image and the release set in
# a copy of components/release, applies it, and waits until the Job is Complete (exit 0) or
# Failed (exit 1, after printing the pod's last log lines), for at most JOB_TIMEOUT_SECONDS
# (default 1800, the Job's activeDeadlineSeconds). The Job's name comes from a hash of the
# release: run again for the same release it changes nothing and reports the Job's outcome;
# a new release gets a new Job, so no earlier Job has to be deleted. IMAGE is NAME:TAG. Uses the
# current kubectl context and namespace.
set -euo pipefail

usage="usage: $0 pre-deploy|post-deploy IMAGE:TAG RELEASE"
[ "$#" -eq 3 ] || { echo "$usage" >&2; exit 64; }
phase=$1 image=$2 release=$3
case $phase in
    pre-deploy | post-deploy) ;;
    *) echo "$usage" >&2; exit 64 ;;
esac
case $image in
    *:*) ;;
    *) echo "$usage (the image needs its tag)" >&2; exit 64 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -R "$here/base" "$here/components" "$here/overlays" "$work/"
settings="$work/components/release/kustomization.yaml"
sed -i -e "s#^\( *newName:\).*#\1 ${image%:*}#" \
    -e "s#^\( *newTag:\).*#\1 \"${image##*:}\"#" \
    -e "s#^\( *- release=\).*#\1$release#" "$settings"

kubectl kustomize "$work/overlays/$phase" > "$work/rendered.yaml"
job=$(kubectl apply -f "$work/rendered.yaml" -o name | grep '^job' | head -n 1)
name=${job#*/}
echo "$name: applied for release $release"

deadline=$((SECONDS + ${JOB_TIMEOUT_SECONDS:-1800}))
while [ "$SECONDS" -lt "$deadline" ]; do
    conditions=$(kubectl get job "$name" \
        -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')
    case " $conditions " in
        *" Complete "*)
            kubectl logs "job/$name" --tail=20 || true
            echo "$name: complete"
            exit 0
            ;;
        *" Failed "*)
            kubectl logs "job/$name" --tail=50 || true
            echo "$name: failed (delete the Job to run this release's migrations again)" >&2
            exit 1
            ;;
    esac
    sleep 5
done
echo "$name: neither complete nor failed after ${JOB_TIMEOUT_SECONDS:-1800}s" >&2
exit 1
