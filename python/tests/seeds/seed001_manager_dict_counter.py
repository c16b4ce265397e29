# Seed 001_4c3e96c635851dad.txt, example 7: 70 processes each do dic['count'] -= 1 on a
# Manager dict, without a lock (the seed's point: the result may differ from 30).
# Changed: only the import line (names shmq). The test checks it ends and prints a count
# in 30..99.
from shmq import Process, Manager


def minus(dic):
    dic['count'] -= 1


if __name__ == '__main__':
    m = Manager()
    dic = m.dict({'count': 100})  # 这个字典会变成可用于数据共享的字典
    p_list = []
    for i in range(70):
        p =Process(target=minus, args=(dic,))
        p_list.append(p)
        p.start()
    [i.join() for i in p_list]
    print(dic)
