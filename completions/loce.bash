# bash completion for loce (generated from the loce Typer app by scripts/dev/gen_completions.py; do not edit)
_loce_complete() {
    local cur prev path i w words opts valued
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    path=""
    for ((i=1; i<COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case "${path:+$path }$w" in
            "analyze"|"configs"|"data"|"data prep"|"data stats"|"data synth"|"doctor"|"eval"|"finetune"|"inspect"|"inspect memory"|"inspect scores"|"predict"|"quickstart"|"report"|"train"|"train base") path="${path:+$path }$w" ;;
        esac
    done
    case "$path" in
        "") opts="analyze configs data doctor eval finetune inspect predict quickstart report train --debug --version --help -h"; valued="" ;;
        "analyze") opts="--ann --compare --metric --json --plot --help -h"; valued="--ann --compare --metric --plot" ;;
        "configs") opts="--json --help -h"; valued="" ;;
        "data") opts="prep stats synth --help -h"; valued="" ;;
        "data prep") opts="--root --version --check-images --subset --seed --out --force --json --help -h"; valued="--root --version --check-images --subset --seed --out" ;;
        "data stats") opts="--json --plot --help -h"; valued="--plot" ;;
        "data synth") opts="--out -o --like --num-classes --train-images --val-images --image-size --tail-exponent --max-objects --seed --force --json --help -h"; valued="--out -o --like --num-classes --train-images --val-images --image-size --tail-exponent --max-objects --seed" ;;
        "doctor") opts="--json --help -h"; valued="" ;;
        "eval") opts="--results --ann --split --metric --evaluator --workers --max-dets --protocol --dets-per-class --out --cfg-options --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --force --amp --json --verbose --help -h"; valued="--results --ann --split --metric --evaluator --workers --max-dets --protocol --dets-per-class --out --cfg-options --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --amp" ;;
        "finetune") opts="--from --work-dir --resume --resume-from --seed --deterministic --cfg-options --force --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --tensorboard --no-validate --checkpoint-every --requeue --amp --json --verbose --help -h"; valued="--from --work-dir --resume-from --seed --cfg-options --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --checkpoint-every --amp" ;;
        "inspect") opts="memory scores --help -h"; valued="" ;;
        "inspect memory") opts="--plot --json --help -h"; valued="--plot" ;;
        "inspect scores") opts="--split --lowest --plot --json --help -h"; valued="--split --lowest --plot" ;;
        "predict") opts="--out --score-thr --max-dets --device --split --cfg-options --force --amp --json --help -h"; valued="--out --score-thr --max-dets --device --split --cfg-options --amp" ;;
        "quickstart") opts="--work-dir --json --verbose --help -h"; valued="--work-dir" ;;
        "report") opts="--split --metric --format --protocol --plot --allow-different-data --help -h"; valued="--split --metric --format --protocol --plot" ;;
        "train") opts="base --help -h"; valued="" ;;
        "train base") opts="--work-dir --resume --resume-from --seed --deterministic --cfg-options --force --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --tensorboard --no-validate --checkpoint-every --requeue --amp --json --verbose --help -h"; valued="--work-dir --resume-from --seed --cfg-options --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --checkpoint-every --amp" ;;
    esac
    # an option that takes a value: fall back to file-name completion
    if [[ -n "$prev" && " $valued " == *" $prev "* ]]; then
        COMPREPLY=()
        return 0
    fi
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
}
complete -o default -F _loce_complete loce
