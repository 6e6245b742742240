#!/usr/bin/env bash
# Is REPOSITORY:TAG free in ECR? Writes free=true|false to $GITHUB_OUTPUT (or stdout).
#   scripts/ecr_tag_free.sh <repository> <tag>
# A tag that exists is never pushed again: a released version, or a commit's runtime image,
# must not change under the functions and tasks that run it. Any other error (no such
# repository, access denied) fails the step instead of being read as "free".
set -euo pipefail
repository=$1
tag=$2
out=${GITHUB_OUTPUT:-/dev/stdout}

if error=$(aws ecr describe-images --repository-name "$repository" \
  --image-ids imageTag="$tag" --query 'imageDetails[0].imageDigest' --output text 2>&1); then
  echo "::notice::$repository:$tag exists ($error); not pushed again. Bump the version to release a change."
  echo "free=false" >>"$out"
elif grep -q ImageNotFoundException <<<"$error"; then
  echo "free=true" >>"$out"
else
  echo "::error::cannot tell whether $repository:$tag exists: $error"
  exit 1
fi
