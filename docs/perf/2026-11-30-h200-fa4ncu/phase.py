import sys
f=sys.argv[1]; marks=[(int(a,16),n) for a,n in (x.split('=') for x in sys.argv[2:])]
rows=[]
for l in open(f):
    p=l.split()
    if len(p)<3: continue
    a=int(p[0],16); c=float(p[1]); s=int(p[2])
    if 7.9<=c<=8.1: rows.append((a,s))
tot=sum(s for a,s in rows); acc={}
for a,s in rows:
    name='pre'
    for m,n in marks:
        if a>=m: name=n
    acc[name]=acc.get(name,0)+s
for m,n in marks: print("%-22s %5.1f%%"%(n,100*acc.get(n,0)/tot))
